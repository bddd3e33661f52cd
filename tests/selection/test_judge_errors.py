"""Judge endpoints that cannot be used: one that refuses connections, one that answers garbage.

The garbage judge is a small real HTTP server speaking the OpenAI wire format (a stand-in for a paid or
broken external endpoint), so the real `openai` client and the real store are exercised end to end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from empathy.errors import JudgeError
from selection.commands import score as score_cmd
from selection.corpus import make_loader
from selection.judges.base import Score
from selection.judges.openai_judge import OpenAIJudge
from selection.scoring import run_scoring
from selection.store import ScoreStore
from tests.conftest import free_port

GARBAGE = "What a wonderful reply, I like it a lot!"


class GarbageHandler(BaseHTTPRequestHandler):
    completions = 0

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "garbage", "object": "model", "created": 0,
                                                "owned_by": "test"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).completions += 1
        self._send({"id": "x", "object": "chat.completion", "created": int(time.time()), "model": "garbage",
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant", "content": GARBAGE}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


@pytest.fixture
def garbage_url() -> Iterator[str]:
    GarbageHandler.completions = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), GarbageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _samples(corpus_dir: Path, n: int) -> list:
    return make_loader("empatheticdialogues", corpus_dir).load("valid").samples[:n]


async def test_garbage_answers_are_recorded_as_failed_with_raw_text(garbage_url: str, corpus_dir: Path,
                                                                   tmp_path: Path) -> None:
    store = ScoreStore.from_url(f"sqlite:///{tmp_path / 's.db'}")
    judge = OpenAIJudge(url=garbage_url, model="garbage", concurrency=2, max_retries=1)
    samples = _samples(corpus_dir, 3)
    summary = await run_scoring(judge, samples, store, split="valid", progress=False)
    await judge.aclose()
    assert (summary.asked, summary.ok, summary.failed) == (3, 0, 3)
    assert GarbageHandler.completions == 3 * 2  # each sample asked, then retried once
    rows = store.get(judge.judge_id, judge.version, ok_only=False)
    assert {row.raw for row in rows.values()} == {GARBAGE}
    assert all(row.sensibility is None and row.rationality is None and row.error for row in rows.values())
    assert store.get(judge.judge_id, judge.version) == {}


async def test_unknown_model_lists_what_the_endpoint_serves(garbage_url: str) -> None:
    judge = OpenAIJudge(url=garbage_url, model="gpt-x")
    with pytest.raises(JudgeError, match=r"'gpt-x' is not served.*\['garbage'\]"):
        await judge.check()
    await judge.aclose()


async def test_refused_connection_names_the_url_and_keeps_the_store(corpus_dir: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    store = ScoreStore.from_url(f"sqlite:///{tmp_path / 's.db'}")
    samples = _samples(corpus_dir, 4)
    judge = OpenAIJudge(url=url, model="base", max_retries=0)
    store.put_many([Score(samples[0].id, 6, 4, "{}")], judge.judge_id, judge.version)
    with pytest.raises(JudgeError) as info:
        await run_scoring(judge, samples, store, progress=False)
    await judge.aclose()
    message = str(info.value)
    assert url in message and "--judge-url" in message and "EMPATHY_JUDGE_URL" in message
    assert set(store.get(judge.judge_id, judge.version)) == {samples[0].id}


def test_score_command_with_refused_url_is_a_judge_error(corpus_dir: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(JudgeError, match="unreachable"):
        score_cmd.main(["--split", "valid", "--limit", "2", "--judge-url", url, "--corpus", str(corpus_dir),
                        "--data-dir", str(tmp_path), "--no-progress"])


async def test_imported_judge_cannot_score_new_samples(corpus_dir: Path, tmp_path: Path) -> None:
    from empathy.settings import get_settings
    from selection.judges import ImportedJudge, make_judge

    judge = make_judge("imported:efficient-empathy-chatgpt", get_settings())
    assert isinstance(judge, ImportedJudge) and judge.judge_id == "efficient-empathy-chatgpt"
    store = ScoreStore.from_url(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(JudgeError, match="cannot score 2 new samples"):
        await run_scoring(judge, _samples(corpus_dir, 2), store, progress=False)
