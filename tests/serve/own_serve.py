"""An `empathy serve` of the tests' own: the real CLI in a child process, with its own vLLM child on the tiny
model. Tests that kill, respawn or stop an engine use it, never the session's shared engine.

Timeouts here are deadlines for things to happen, not measurements: vLLM needs about a minute to start the
tiny model on an idle 2-core machine, and took 10 minutes here while a training run and other engines held
the cores, so waits for an engine are generous (20 minutes) and nothing asserts how fast it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from tests.conftest import free_port
from tests.serve.conftest import ADMIN_KEY, API_KEY

ENGINE_DEADLINE = 1200.0  # seconds for a vLLM child to become healthy on a loaded machine (see above)


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has exited already


def processes() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def group_members(pgid: int) -> list[int]:
    return [pid for pid in processes() if (stat := proc_stat(pid)) and stat[2] == pgid and stat[0] != "Z"]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def own_data_dir(folder: Path, tiny_artifacts: Path) -> Path:
    """A data_dir of its own (store, logs, extra experts) over the shared tiny adapters (linked)."""
    (folder / "experts").mkdir(parents=True)
    for expert in ("sensibility", "rationality"):
        (folder / "experts" / expert).symlink_to(tiny_artifacts / "experts" / expert,
                                                 target_is_directory=True)
    (folder / "blends").symlink_to(tiny_artifacts / "blends", target_is_directory=True)
    return folder


@dataclass
class ServeProcess:
    """One running `python -m empathy serve` and what the tests need to watch it."""

    proc: subprocess.Popen[bytes]
    url: str
    vllm_port: int
    data_dir: Path
    log_path: Path

    @property
    def vllm_url(self) -> str:
        return f"http://127.0.0.1:{self.vllm_port}"

    def client(self, timeout: float = 120.0) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key=API_KEY, max_retries=0, timeout=timeout)

    def http(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def engine_pid(self) -> int | None:
        """The vLLM API server started by this gateway (a direct child), if one is running."""
        found = [pid for pid in processes() if (stat := proc_stat(pid)) and stat[1] == self.proc.pid
                 and stat[0] != "Z" and "vllm.entrypoints" in cmdline(pid)]
        return found[0] if found else None

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/health", timeout=10)

    def restarts(self) -> float:
        return total(scrape(self.url), "empathy_engine_restarts_total")

    def ready(self) -> bool:
        self.check_running()
        try:
            return self.health().status_code == 200
        except httpx.HTTPError:
            return False

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"empathy serve exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        engine_log = self.data_dir / "logs" / "vllm.log"
        if engine_log.exists():
            text += "\n--- vllm.log ---\n" + engine_log.read_text(errors="replace")[-chars:]
        return text[-2 * chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        pid = self.engine_pid()
        if pid is not None:  # never leave an engine behind, whatever the test did
            os.killpg(pid, signal.SIGKILL)


def start_serve(data_dir: Path, base_model: Path) -> ServeProcess:
    """`python -m empathy serve` on free ports with the tiny model; returns once it listens (the engine
    may still be starting: use `ServeProcess.ready`)."""
    port, vllm_port = free_port(), free_port()
    env = {**os.environ, "EMPATHY_VLLM_KVCACHE_GIB": "1", "EMPATHY_VLLM_MAX_MODEL_LEN": "1024",
           "EMPATHY_HEALTH_INTERVAL": "0.5", "EMPATHY_LOG_LEVEL": "INFO",
           "EMPATHY_VLLM_START_TIMEOUT": str(ENGINE_DEADLINE)}
    env.pop("EMPATHY_STORE_URL", None)
    log_path = data_dir / "serve.log"
    cmd = [sys.executable, "-m", "empathy", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--base-model", str(base_model), "--vllm-port", str(vllm_port),
           "--api-key", API_KEY, "--admin-key", ADMIN_KEY, "--no-ui"]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    serve = ServeProcess(proc, f"http://127.0.0.1:{port}", vllm_port, data_dir, log_path)

    def listening() -> bool:
        serve.check_running()
        try:
            serve.health()
        except httpx.HTTPError:
            return False
        return True

    wait_for(listening, 180, "empathy serve to listen")
    return serve


class ServeHolder:
    """Hands out a ready `empathy serve`, starting a new one when a test has stopped the last one: so the
    destructive tests pass alone and in any order while sharing one process when they can."""

    def __init__(self, folder: Path, tiny_artifacts: Path, base_model: Path) -> None:
        self.folder, self.tiny_artifacts, self.base_model = folder, tiny_artifacts, base_model
        self.current: ServeProcess | None = None
        self.started = 0

    def get(self) -> ServeProcess:
        if self.current is None or self.current.proc.poll() is not None:
            if self.current is not None:
                self.current.stop()
            self.started += 1
            data_dir = own_data_dir(self.folder / f"serve-{self.started}", self.tiny_artifacts)
            self.current = start_serve(data_dir, self.base_model)
        serve = self.current
        wait_for(serve.ready, ENGINE_DEADLINE, f"the engine of {serve.url} to be ready ({serve.log_path})")
        return serve

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()


Sample = tuple[str, dict[str, str], float]


def scrape(url: str) -> list[Sample]:
    """Every sample of a gateway's /metrics as (name, labels, value), parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    resp = httpx.get(f"{url}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(resp.text)
            for s in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    return sum(value for sample, have, value in samples
               if sample == name and all(have.get(k) == v for k, v in labels.items()))
