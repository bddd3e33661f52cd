"""A gateway that owns its process (`empathy serve`) moves its start-up objects out of the cyclic garbage
collector's reach, so a full collection no longer stalls the event loop; one run in-process does not."""

from __future__ import annotations

import gc
from pathlib import Path

from serve.app import create_app
from tests.serve.conftest import make_settings, serve_app


def test_only_a_gateway_that_owns_its_process_freezes_its_start_up_objects(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    settings = make_settings(tmp_path, tmp_path / "data", upstreams=["http://127.0.0.1:9"])
    gc.unfreeze()
    try:
        with serve_app(create_app(settings)):
            assert gc.get_freeze_count() == 0
        with serve_app(create_app(settings, freeze_gc=True)):
            assert gc.get_freeze_count() > 10_000
            garbage: list[list[object]] = [[] for _ in range(1000)]
            for item in garbage:
                item.append(item)  # cycles made after start-up are still collected
            del garbage, item
            assert gc.collect() >= 1000
    finally:
        gc.unfreeze()
