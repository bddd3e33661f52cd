"""The LLM judge against the session's real vLLM server (a tiny random model: the JSON schema in
`response_format` is what makes it answer in format), and a scoring run killed midway then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from selection.corpus import make_loader
from selection.judges.openai_judge import OpenAIJudge
from selection.judges.prompt import PROMPT_VERSION
from selection.scoring import run_scoring
from selection.store import ScoreRow, ScoreStore

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the session engine may start inside this test; a shared CPU is slow
async def test_llm_judge_scores_20_samples(vllm_server: str, corpus_dir: Path, tmp_path: Path) -> None:
    samples = make_loader("empatheticdialogues", corpus_dir).load("valid").samples[:20]
    store = ScoreStore.from_url(f"sqlite:///{tmp_path / 's.db'}")
    judge = OpenAIJudge(url=vllm_server, model="base", concurrency=8, max_retries=2, timeout=120)
    try:
        first = await run_scoring(judge, samples, store, split="valid", progress=False)
        again = await run_scoring(judge, samples, store, split="valid", progress=False)
    finally:
        await judge.aclose()
    assert (first.asked, first.ok + first.failed) == (20, 20)
    assert first.ok >= 18, first.failures
    scores = store.get("openai:base", PROMPT_VERSION)
    assert len(scores) == first.ok
    for score in scores.values():
        assert 1 <= score.sensibility <= 10 and 1 <= score.rationality <= 10
        assert json.loads(score.raw).keys() == {"sensibility", "rationality"}
    # G-Eval: with logprobs a score is an expectation, not only the integer the model wrote.
    assert any(score.sensibility != int(score.sensibility) for score in scores.values())
    assert (again.skipped, again.asked) == (first.ok, first.failed)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def _score_cmd(url: str, corpus_dir: Path, db: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "empathy", "select", "score", "--split", "valid", "--limit", str(limit),
            "--judge-url", f"{url}/v1", "--judge-model", "base", "--concurrency", "1", "--corpus",
            str(corpus_dir), "--store-url", f"sqlite:///{db}", "--no-progress", "--json"]


def _env() -> dict[str, str]:
    # No retries, so every sample the second run asks is exactly one request to vLLM.
    return {**os.environ, "EMPATHY_JUDGE_MAX_RETRIES": "0", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the session engine may start inside this test; a shared CPU is slow
def test_killed_run_resumes_without_re_asking(vllm_server: str, corpus_dir: Path, tmp_path: Path) -> None:
    db, limit = tmp_path / "scores.db", 24
    proc = subprocess.Popen(_score_cmd(vllm_server, corpus_dir, db, limit), cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = ScoreStore.from_url(f"sqlite:///{db}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(store.get("openai:base", PROMPT_VERSION, ok_only=False)) >= 4:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = datetime.now(UTC)

    before = store.get("openai:base", PROMPT_VERSION)
    assert 1 <= len(before) < limit
    second = subprocess.run(_score_cmd(vllm_server, corpus_dir, db, limit), cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=600, check=True)
    summary = json.loads(second.stdout)
    assert summary["skipped"] == len(before)
    assert summary["asked"] == limit - len(before)
    # Every answer is written with its time: the second run wrote exactly the missing ones.
    with store.engine.connect() as conn:
        rows = dict(conn.execute(select(ScoreRow.sample_id, ScoreRow.created_at)).all())
    written = {sample_id for sample_id, at in rows.items() if _aware(at) > killed_at}
    assert len(written) == summary["asked"] and not written & set(before)
    after = store.get("openai:base", PROMPT_VERSION)
    assert all(after[sample_id] == score for sample_id, score in before.items())
