"""Session-wide real parts: the shared corpus, a tiny random Llama with the default tokenizer, LoRA adapters
for it, and ONE vLLM OpenAI server (CPU build) started for the whole session and reused by every test.

Nothing here is a mock: the engine is the real `vllm.entrypoints.openai.api_server`, started through the
same `empathy.engine.EngineProcess` that `empathy serve` uses.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from empathy.engine import EngineSupervisor

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EMPATHY_TEST_SHARED_DATA", REPO.parent / "shared" / "data"))
# The prepared default model is cached where `empathy up` keeps it, so tests and the product share it.
MODEL_CACHE = Path(os.environ.get("EMPATHY_TEST_MODEL_CACHE", REPO / ".empathy"))
ARTIFACTS = REPO / "test-artifacts"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free TCP port BELOW the kernel's ephemeral range: a port the kernel hands out for `bind(0)` is free
    now but may be taken a second later by any process (vLLM's workers bind such ports), while nothing picks
    one of these by chance. Falls back to an ephemeral port."""
    import random

    top = _ephemeral_start()
    for _ in range(50):
        port = random.SystemRandom().randrange(max(top - 12000, 1024), top)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `last_in_module` run after the other tests of their module (which stay contiguous, so
    module fixtures are set up once). A matter of cost, not correctness: such a test uses up something the
    module shares (e.g. it stops the module's own `empathy serve`, which then must be started again)."""
    def last(item: pytest.Item) -> bool:
        return item.get_closest_marker("last_in_module") is not None

    for module in dict.fromkeys(getattr(item, "module", None) for item in items if last(item)):
        block = [i for i, item in enumerate(items) if getattr(item, "module", None) is module]
        ordered = sorted((items[i] for i in block), key=last)  # stable: the rest keep their order
        for i, item in zip(block, ordered, strict=True):
            items[i] = item


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    path = SHARED_DATA / "empatheticdialogues"
    if not (path / "valid.csv").is_file():
        pytest.fail(f"shared corpus not found at {path}; set EMPATHY_TEST_SHARED_DATA to the shared data dir")
    return path


@pytest.fixture(scope="session")
def paper_scores_path() -> Path:
    return SHARED_DATA / "efficient-empathy" / "val_results.json"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real default base model (SmolLM2-135M-Instruct from the PyPI wheel), prepared once."""
    from training.base_model import prepare_default_model

    return prepare_default_model(MODEL_CACHE)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Path:
    """A 2-layer random Llama with the default model's tokenizer and chat template."""
    from tests.tiny import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), default_model_dir)


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A data_dir with REAL artifacts on the tiny model: `subsets/{sensibility,rationality}.jsonl`,
    `experts/{sensibility,rationality}/` (rank 8, trained a few steps with `training.experts`) and the blend
    grid 0, 0.25, 0.5, 0.75, 1 (`blends/<name>/`, rank 16) with `blends/index.json`."""
    from tests.tiny import make_tiny_artifacts

    return make_tiny_artifacts(tmp_path_factory.mktemp("tiny-data"), tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_adapters(tiny_artifacts: Path) -> dict[str, Path]:
    """LoRA modules served by the session engine: name -> folder (both experts and every blend)."""
    import json

    experts = tiny_artifacts / "experts"
    index = json.loads((tiny_artifacts / "blends" / "index.json").read_text())
    return {
        "empathy-sensibility": experts / "sensibility",
        "empathy-rationality": experts / "rationality",
        **{entry["name"]: Path(entry["path"]) for entry in index["blends"]},
    }


@pytest.fixture(scope="session")
def engine_supervisor(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
                      tiny_adapters: dict[str, Path]) -> Iterator[EngineSupervisor]:
    """The supervisor (`empathy.engine.EngineSupervisor`, as `empathy serve` uses) that owns the session's
    one vLLM server: restarts it if it dies (the gateway's fault test kills it once)."""
    from empathy.engine import EngineSpec, EngineSupervisor

    spec = EngineSpec(
        model=str(tiny_model_dir), served_name="base", port=free_port(),
        lora_modules={name: str(path) for name, path in tiny_adapters.items()},
        max_lora_rank=16, max_loras=4, max_model_len=1024, kvcache_gib=1, dtype="float32",
    )
    # Deadlines, not measurements: ~1 min on an idle 2-core machine, 10 while other work holds the cores.
    supervisor = EngineSupervisor(spec, log_file=tmp_path_factory.mktemp("vllm") / "vllm.log",
                                  start_timeout=1200, min_backoff=0.5, echo_level=logging.DEBUG)
    supervisor.start()
    try:
        supervisor.wait_ready(timeout=1500)
        yield supervisor
    finally:
        supervisor.stop()


@pytest.fixture(scope="session")
def vllm_server(engine_supervisor: EngineSupervisor) -> str:
    """Base URL (`http://127.0.0.1:PORT`) of the one real vLLM OpenAI server of the session."""
    return engine_supervisor.url
