"""A vLLM engine for a training-side job (router targets, evaluation): `--url`, or one started for the job."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

from empathy.layout import Layout
from empathy.settings import Settings

log = logging.getLogger("empathy.training.engine")



@contextlib.contextmanager
def engine_url(settings: Settings, url: str | None, lora_modules: Mapping[str, str], max_lora_rank: int,
               log_name: str = "vllm") -> Iterator[str]:
    """Yield the OpenAI base URL (`.../v1`) of `url`, or of a vLLM child started for this job."""
    if url:
        yield url.rstrip("/") if url.rstrip("/").endswith("/v1") else f"{url.rstrip('/')}/v1"
        return
    from empathy.engine import EngineProcess, spec_from_settings

    spec = spec_from_settings(settings, lora_modules=lora_modules, max_lora_rank=max_lora_rank,
                              dtype="float32")
    log_file = Layout(settings.data_dir).log(log_name)
    engine = EngineProcess(spec, log_file=log_file)
    log.info("starting a vLLM engine for this job (log: %s); pass --url to use a running one", log_file)
    engine.start()
    try:
        engine.wait_healthy(timeout=600)
        yield f"{engine.url}/v1"
    finally:
        engine.stop()
