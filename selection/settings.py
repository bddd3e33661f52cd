"""Settings owned by `selection/` (composed into `empathy.settings.Settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings


class SelectionSettings(BaseSettings):
    corpus_path: Path = Field(
        default=Path("../shared/data/empatheticdialogues"),
        description="Folder of the corpus. EmpatheticDialogues: the official layout with train.csv, "
        "valid.csv, test.csv (from empatheticdialogues.tar.gz). JSONL: <split>.jsonl files of "
        '{"messages": [...]} chats.',
    )
    corpus_format: Literal["empatheticdialogues", "jsonl"] = Field(
        default="empatheticdialogues", description="Which loader reads `corpus_path`."
    )
    judge_url: str = Field(
        default="http://127.0.0.1:8000/v1",
        description="Base URL of the OpenAI-compatible endpoint the LLM judge calls (OpenAI, or a vLLM server).",
    )
    judge_model: str = Field(default="base", description="Model name sent to the judge endpoint.")
    judge_api_key: str = Field(
        default="EMPTY", description="API key for the judge endpoint (vLLM accepts any value)."
    )
    judge_concurrency: int = Field(default=8, ge=1, le=1024, description="Judge requests in flight at once.")
    judge_max_retries: int = Field(
        default=4, ge=0, le=20, description="Retries per sample on 429/5xx/timeouts/unparsable replies."
    )
    judge_timeout: float = Field(default=120.0, gt=0, description="Seconds before one judge request times out.")
    sensibility_threshold: float = Field(
        default=5.0, description="Sensibility set: S > this (paper: 5)."
    )
    rationality_threshold: float = Field(
        default=5.0,
        description="Rationality set: R > this; the sensibility set also needs R < this (paper: 5).",
    )
