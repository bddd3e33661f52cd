"""Schema fuzzing (issue 13): schemathesis draws requests from the gateway's own /openapi.json, valid ones
(positive) and ones that break the schema (negative), for every operation, and sends them to a real
gateway over the session's real vLLM server. Any 5xx fails the test. Bounded: EMPATHY_FUZZ_EXAMPLES cases
per operation and mode (default 20), derandomized so CI runs the same cases every time.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serve.app import create_app
from tests.serve.conftest import ADMIN_KEY, Running, make_settings, serve_app

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("EMPATHY_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Any, engine_supervisor: Any,
           tiny_router: Any) -> Iterator[Running]:
    """A gateway of its own (own store: the fuzzer creates and deletes experiments) with small caps, so
    that valid completions stay cheap on the shared engine."""
    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(make_settings(tmp, tiny_artifacts, max_n=2, max_tokens_cap=8, body_timeout=5.0,
                                   sampling_defaults={"max_tokens": 4}),
                     supervisor=engine_supervisor, router=tiny_router)
    with serve_app(app) as url:
        yield Running(url, app)


def _run(operation: Any, mode: GenerationMode, url: str, statuses: Counter[int],
         failures: list[str], refusals: Counter[str]) -> None:
    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        resp = case.call(base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=120)
        statuses[resp.status_code] += 1
        if 400 <= resp.status_code < 500 and mode is GenerationMode.POSITIVE:
            refusals[f"{operation.method.upper()} {operation.path} {resp.status_code} {_code(resp)}"] += 1
        if resp.status_code >= 500:
            failures.append(f"{resp.status_code} {resp.text[:300]}\n  {case.as_curl_command()[:600]}")

    with contextlib.suppress(Unsatisfiable):  # e.g. no way to break an operation without parameters
        call()


def _code(resp: Any) -> str:
    try:
        return str(resp.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


def _served_models_only(spec: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """The spec with `model` limited to the served names, so that valid cases reach vLLM (a random name
    is a 404 at the gateway's door)."""
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        spec["components"]["schemas"][name]["properties"]["model"] = {"type": "string", "enum": models}
    return spec


def test_no_5xx_from_schema_fuzzing(fuzzed: Running) -> None:
    spec = httpx.get(f"{fuzzed.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(_served_models_only(spec, fuzzed.gateway.models()))
    statuses: Counter[int] = Counter()
    refusals: Counter[str] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, fuzzed.url, statuses, failures, refusals)
    cases = sum(statuses.values())
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    print(f"schema fuzz: {cases} cases over {len(operations)} operations, {server_errors} 5xx; "
          f"statuses {dict(sorted(statuses.items()))}; valid cases refused: {refusals.most_common(12)}")
    assert cases >= len(operations) * 5
    assert not failures, "\n".join(failures[:10])
