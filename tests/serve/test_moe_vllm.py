"""`empathy-moe` in vLLM: the out-of-tree model our plugin registers, loaded from an `empathy train moe`
artifact, held to the transformers reference and (gates forced to one expert) to that expert served through
vLLM's own LoRA path; then through the gateway as a model and an experiment arm.

Three real vLLM servers start for this module: two of the MoE (one model per server) and one with the
experts as LoRA modules. They run eager (no torch.compile warm-up, which takes many minutes on a shared
CPU); `bench/moe_throughput.py` and `empathy serve` run the compiled model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from openai import OpenAI

from tests.conftest import free_port
from tests.serve.conftest import ADMIN_KEY, API_KEY, Running, make_settings, serve_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # three engines start on a shared CPU
PROMPTS = [[1, 20, 300, 4000, 55, 66, 77, 88, 99, 1000], [5, 6, 7], list(range(100, 160, 3))]
TOL = 2e-3  # float32 everywhere; vLLM's CPU attention and matmul order differ from transformers


def _gates(kinds: tuple[str, ...], expert: int | None) -> dict[str, torch.Tensor]:
    from empathy.moe.lora_pack import forced_gate_bias

    torch.manual_seed(7)
    gates = {}
    for layer in range(2):
        for kind in kinds:
            forced = expert is not None
            gates[f"{layer}.{kind}.weight"] = torch.zeros(2, 128) if forced else torch.randn(2, 128)
            gates[f"{layer}.{kind}.bias"] = forced_gate_bias(2, expert) if forced else torch.randn(2)
    return gates


@pytest.fixture(scope="module")
def moe_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Path,
                  tiny_model_dir: Path) -> dict[str, Path]:
    """`random`: trained-looking gates (random, per token) at the MLP; `sensibility`: every module routed,
    the gates forced onto the sensibility expert."""
    from training.moe.train import compose

    root = tmp_path_factory.mktemp("moe")
    experts = [(s, tiny_artifacts / "experts" / s) for s in ("sensibility", "rationality")]
    return {"random": compose(str(tiny_model_dir), experts, root / "random", "mlp", _gates(("mlp",), None)),
            "sensibility": compose(str(tiny_model_dir), experts, root / "sens", "all",
                                   _gates(("mlp", "attn"), 0))}


@pytest.fixture(scope="module")
def engines(moe_artifacts: dict[str, Path], tiny_model_dir: Path, tiny_adapters: dict[str, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Both MoE servers and a LoRA server (base, experts, blends: what the session engine serves), all
    eager and started together; the LoRA one under the supervisor the gateway takes."""
    from empathy.engine import EngineProcess, EngineSpec, EngineSupervisor
    from serve.catalog import MOE_NAME

    logs = tmp_path_factory.mktemp("vllm-moe")
    eager = {"max_model_len": 512, "kvcache_gib": 1, "dtype": "float32", "extra_args": ("--enforce-eager",)}
    moe = {name: EngineProcess(EngineSpec(model=str(folder), served_name=MOE_NAME, port=free_port(), **eager),
                               log_file=logs / f"{name}.log", echo_level=logging.DEBUG)
           for name, folder in moe_artifacts.items()}
    lora = EngineSupervisor(EngineSpec(model=str(tiny_model_dir), served_name="base", port=free_port(),
                                       lora_modules={n: str(p) for n, p in tiny_adapters.items()},
                                       max_lora_rank=16, max_loras=4, **eager),
                            log_file=logs / "lora.log", start_timeout=1800, echo_level=logging.DEBUG)
    try:
        lora.start()
        for engine in moe.values():
            engine.start()
        waits = [threading.Thread(target=e.wait_healthy, args=(1800,)) for e in moe.values()]
        for wait in waits:
            wait.start()
        lora.wait_ready(timeout=1800)
        for wait in waits:
            wait.join()
        for name, engine in moe.items():
            assert engine.healthy(), f"the {name} MoE engine did not start; see {logs / name}.log"
        yield {**{name: engine.url for name, engine in moe.items()}, "lora": lora}
    finally:
        lora.stop()
        for engine in moe.values():
            engine.stop()


def prompt_logprobs(url: str, model: str, prompts: list[list[int]]) -> list[list[dict[int, float]]]:
    """Per prompt, per position >= 1: token id -> logprob (the top 5 and the prompt's own token)."""
    client = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=300)
    response = client.completions.create(model=model, prompt=prompts, max_tokens=1, temperature=0.0,
                                         extra_body={"prompt_logprobs": 5})
    out = []
    for choice in sorted(response.choices, key=lambda c: c.index):
        rows = (choice.model_extra or {})["prompt_logprobs"][1:]
        out.append([{int(k): float(v["logprob"]) for k, v in row.items()} for row in rows])
    return out


def _max_gap(got: list[list[dict[int, float]]], want: list[list[dict[int, float]]] | list[torch.Tensor]
             ) -> float:
    gap = 0.0
    for got_rows, want_rows in zip(got, want, strict=True):
        for pos, row in enumerate(got_rows):
            for token, logprob in row.items():
                gap = max(gap, abs(logprob - float(want_rows[pos][token])))
    return gap


def test_vllm_moe_equals_the_transformers_reference(engines: dict[str, Any],
                                                     moe_artifacts: dict[str, Path]) -> None:
    """Three prompts in one request (batched in one forward pass), against the reference one by one."""
    from serve.catalog import MOE_NAME
    from training.moe.reference import load_reference

    reference = load_reference(moe_artifacts["random"])
    want, spread = [], 0.0
    with torch.no_grad():
        for ids in PROMPTS:
            logits = reference(input_ids=torch.tensor([ids])).logits[0].float()
            want.append(torch.log_softmax(logits, -1)[:-1])
            spread = max(spread, float(reference.gates["0"]["mlp"].current[0, :, 0].std()))
    assert spread > 0.05  # the gates really differ from token to token
    got = prompt_logprobs(engines["random"], MOE_NAME, PROMPTS)
    assert _max_gap(got, want) < TOL


def test_gates_forced_to_an_expert_equal_that_expert_through_vllm_lora(engines: dict[str, Any]) -> None:
    from serve.catalog import MOE_NAME

    got = prompt_logprobs(engines["sensibility"], MOE_NAME, PROMPTS)
    lora = prompt_logprobs(engines["lora"].url, "empathy-sensibility", PROMPTS)
    base = prompt_logprobs(engines["lora"].url, "base", PROMPTS)
    shared = [[{t: lp for t, lp in row.items() if t in other} for row, other in zip(g, w, strict=True)]
              for g, w in zip(got, lora, strict=True)]
    assert _max_gap(shared, lora) < TOL
    assert _max_gap([[{t: v for t, v in r.items() if t in o} for r, o in zip(g, b, strict=True)]
                     for g, b in zip(got, base, strict=True)], base) > 10 * TOL  # the expert matters


@pytest.fixture(scope="module")
def moe_gateway(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Path, tiny_router: Any,
                engines: dict[str, Any], moe_artifacts: dict[str, Path]) -> Iterator[Running]:
    """The gateway over the LoRA engine's supervisor plus an MoE engine given as `moe_upstreams`."""
    from serve.app import create_app
    from serve.catalog import load_catalog

    settings = make_settings(tmp_path_factory.mktemp("moe-gateway"), tiny_artifacts,
                             moe_upstreams=[engines["random"]])
    catalog = replace(load_catalog(tiny_artifacts), moe=str(moe_artifacts["random"]))
    app = create_app(settings, catalog=catalog, supervisor=engines["lora"], router=tiny_router)
    with serve_app(app) as url:
        yield Running(url, app)


def test_gateway_serves_empathy_moe_as_a_model_and_an_arm(moe_gateway: Running) -> None:
    client = moe_gateway.client()
    assert "empathy-moe" in {m.id for m in client.models.list().data}
    reply = client.chat.completions.create(model="empathy-moe", max_tokens=4,
                                           messages=[{"role": "user", "content": "I lost my keys."}])
    assert reply.choices[0].message.content is not None
    assert reply.model_extra["empathy"]["adapter"] == "empathy-moe"
    exp = {"name": "moe-ab", "arms": [{"name": "moe", "model": "empathy-moe", "weight": 1},
                                      {"name": "sens", "model": "empathy-sensibility", "weight": 1}]}
    with httpx.Client(base_url=moe_gateway.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        assert admin.post("/v1/experiments", json=exp).status_code == 200
    seen = {}
    for user in (f"user-{i}" for i in range(12)):
        out = client.chat.completions.create(model="moe-ab", max_tokens=1, user=user,
                                             messages=[{"role": "user", "content": "Hello"}])
        seen[out.model_extra["empathy"]["arm"]] = out.model_extra["empathy"]["adapter"]
    assert seen == {"moe": "empathy-moe", "sens": "empathy-sensibility"}
    assert API_KEY  # the client above authenticated with it
