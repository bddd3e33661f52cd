"""A vLLM engine serving `empathy-moe` for a training-side job (`empathy eval --model moe`): the given URL
when it lists the model (the gateway, or a server started on the artifact), else one started for the job."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from empathy.layout import MOE_NAME, Layout

if TYPE_CHECKING:
    from empathy.settings import Settings

log = logging.getLogger("empathy.moe")


def lists_moe(url: str) -> bool:
    """Whether the OpenAI server at `url` (with or without `/v1`) serves `empathy-moe`."""
    import httpx

    base = url.rstrip("/").removesuffix("/v1")
    try:
        response = httpx.get(f"{base}/v1/models", timeout=10)
        response.raise_for_status()
    except httpx.HTTPError:
        return False
    return any(m.get("id") == MOE_NAME for m in response.json().get("data", []))


@contextlib.contextmanager
def moe_engine_url(settings: Settings, url: str | None) -> Iterator[str]:
    """Yield the OpenAI base URL (`.../v1`) of a server with `empathy-moe`: `url` if it lists it, else a
    vLLM child started on `<data_dir>/moe` (float32, as the evaluation engine of the LoRA models)."""
    if url and lists_moe(url):
        yield f"{url.rstrip('/').removesuffix('/v1')}/v1"
        return
    from empathy.engine import EngineProcess, spec_from_settings

    layout = Layout(settings.data_dir)
    spec = spec_from_settings(settings, model=str(layout.moe.resolve()), served_name=MOE_NAME,
                              port=settings.moe_vllm_port, dtype="float32")
    log_file = layout.log("vllm-eval-moe")
    engine = EngineProcess(spec, log_file=log_file)
    log.info("starting a vLLM engine for empathy-moe (log: %s)", log_file)
    engine.start()
    try:
        engine.wait_healthy(timeout=settings.vllm_start_timeout)
        yield f"{engine.url}/v1"
    finally:
        engine.stop()
