"""Corpus loaders on the shared EmpatheticDialogues copy and on small broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathy.errors import DataError
from empathy.settings import get_settings
from selection.corpus import load_corpus, make_loader
from selection.corpus.empatheticdialogues import HEADER

EXPECTED = {"train": 40254, "valid": 5738, "test": 5259}


@pytest.mark.parametrize("split", sorted(EXPECTED))
def test_shared_corpus_counts(corpus_dir: Path, split: str) -> None:
    result = load_corpus(get_settings(corpus_path=corpus_dir), split)
    assert len(result.samples) == EXPECTED[split]
    assert result.problems == []
    first = result.samples[0]
    assert first.context[0].role == "user" and first.turn == 2 and first.emotion
    assert "_comma_" not in first.situation + first.response
    assert [m.role for m in result.samples[1].context] == ["user", "assistant", "user"]


def _csv(path: Path, rows: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "valid.csv").write_text("\n".join([",".join(HEADER), *rows]) + "\n", encoding="utf-8")
    return path


def test_malformed_row_is_reported_and_the_rest_loaded(tmp_path: Path) -> None:
    rows = [
        "c1,1,sad,My dog died_comma_ sadly,1,My dog died yesterday.,,",
        'c1,2,sad,My dog died_comma_ sadly,0,"Oh no_comma_ I am so sorry.,,',
        "c1,3,sad,My dog died_comma_ sadly,1,Thanks, it hurts,,",  # unescaped comma: 9 fields
        "c1,4,sad,My dog died_comma_ sadly,0,Take care.,,",
        "c2,1,joyful,I won,1,I won the lottery!,,",
        "c2,x,joyful,I won,0,Wow!,,",  # bad utterance_idx
        "c3,1,proud,My kid,1,My kid graduated.,,",
        "c3,2,proud,My kid,0,Congratulations to both of you!,,",
    ]
    result = make_loader("empatheticdialogues", _csv(tmp_path / "ed", rows)).load("valid")
    lines = sorted(problem.line for problem in result.problems)
    # line 4 (9 fields), line 7 (bad idx), line 5: c1's turn 4 follows the missing turn 3
    assert lines == [4, 5, 7]
    assert all(problem.file.endswith("valid.csv") for problem in result.problems)
    assert "9" in next(p.reason for p in result.problems if p.line == 4)
    responses = [sample.response for sample in result.samples]
    assert responses == ['"Oh no, I am so sorry.', "Congratulations to both of you!"]
    assert result.samples[0].situation == "My dog died, sadly"


def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "ed"
    folder.mkdir()
    (folder / "valid.csv").write_text("")
    with pytest.raises(DataError, match=r"valid\.csv is empty"):
        make_loader("empatheticdialogues", folder).load("valid")


def test_header_only_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no usable rows"):
        make_loader("empatheticdialogues", _csv(tmp_path / "ed", [])).load("valid")


def test_wrong_path_names_the_setting_and_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_corpus(get_settings(corpus_path=tmp_path / "nowhere"), "train")
    message = str(info.value)
    assert "EMPATHY_CORPUS_PATH" in message and "--corpus" in message
    assert "empatheticdialogues.tar.gz" in message and str(tmp_path / "nowhere") in message


def test_jsonl_loader_one_sample_per_assistant_turn(tmp_path: Path) -> None:
    chats = [
        {"messages": [{"role": "user", "content": "I failed my exam."},
                      {"role": "assistant", "content": "I'm sorry, that hurts."},
                      {"role": "user", "content": "Yes."},
                      {"role": "assistant", "content": "Will you retake it?"}], "emotion": "sad"},
        {"messages": [{"role": "robot", "content": "?"}]},
    ]
    lines = [json.dumps(chat) for chat in chats] + ["not json"]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    result = make_loader("jsonl", tmp_path).load("train")
    assert [s.response for s in result.samples] == ["I'm sorry, that hurts.", "Will you retake it?"]
    assert len(result.samples[1].context) == 3 and result.samples[1].emotion == "sad"
    assert [p.line for p in result.problems] == [2, 3]
