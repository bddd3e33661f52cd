"""Scale-out pieces without an engine: a retry goes to another engine than the one that just failed, and
`empathy serve --engine-only` runs the vLLM server a gateway would start, reachable from other machines."""

from __future__ import annotations

from pathlib import Path

from serve.cli import engine_command
from serve.upstreams import Upstream, pick
from tests.serve.conftest import make_settings


def test_a_retry_avoids_the_engine_that_failed() -> None:
    a, b = Upstream("http://a", healthy=True), Upstream("http://b", healthy=True, outstanding=5)
    assert pick([a, b]) is a  # fewest in flight
    assert pick([a, b], avoid=frozenset({"http://a"})) is b  # busier, but not the one that just failed
    b.healthy = False
    assert pick([a, b], avoid=frozenset({"http://a"})) is a  # the only healthy one: tried again


def test_engine_only_serves_the_data_dirs_adapters_on_the_host(tmp_path: Path, tiny_artifacts: Path,
                                                                tiny_model_dir: Path) -> None:
    settings = make_settings(tmp_path, tiny_artifacts, base_model=str(tiny_model_dir), host="0.0.0.0",
                             vllm_port=8123)
    command, env = engine_command(settings)
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flag = {name: command[command.index(name) + 1] for name in ("--host", "--port", "--served-model-name")}
    assert flag == {"--host": "0.0.0.0", "--port": "8123", "--served-model-name": "base"}
    served = {arg.split("=", 1)[0] for arg in command if "=" in arg}
    assert {"empathy-sensibility", "empathy-rationality"} <= served
    assert any(name.startswith("blend-") for name in served)
    assert env["HF_HUB_OFFLINE"] == "1"
