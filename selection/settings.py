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
        description="Base URL of the OpenAI-compatible endpoint the LLM judge calls (OpenAI, or a vLLM "
        "server), including /v1.",
    )
    judge_model: str = Field(default="base", description="Model name sent to the judge endpoint.")
    judge_api_key: str = Field(
        default="EMPTY", description="API key for the judge endpoint (vLLM accepts any value)."
    )
    judge_concurrency: int = Field(default=8, ge=1, le=1024, description="Judge requests in flight at once.")
    judge_max_retries: int = Field(
        default=4, ge=0, le=20, description="Retries per sample on 429/5xx/timeouts/unparsable replies."
    )
    judge_timeout: float = Field(
        default=120.0, gt=0, description="Seconds before one judge request times out."
    )
    sensibility_threshold: float = Field(
        default=5.0, description="Sensibility set: S > this (paper: 5)."
    )
    rationality_threshold: float = Field(
        default=5.0,
        description="Rationality set: R > this; the sensibility set also needs R < this (paper: 5).",
    )
    distill_labels_path: Path = Field(
        default=Path("../shared/data/efficient-empathy/val_results.json"),
        description="Teacher labels the default distilled judge learns from (the paper's released judge "
        "scores, matched to the corpus split `distill_labels_split`).",
    )
    distill_labels_format: Literal["efficient-empathy"] = Field(
        default="efficient-empathy", description="Format of `distill_labels_path`."
    )
    distill_labels_split: str = Field(
        default="valid", description="Corpus split the labels of `distill_labels_path` were made on."
    )
    distill_name: str = Field(
        default="paper-xenc-stacked",
        description="Name of the default distilled judge (`distilled:NAME`, folder "
        "`<data_dir>/judges/distilled/NAME`); the quick and smoke profiles use `paper-stacked` (the default "
        "until session 9; EMPATHY_DISTILL_KIND=stacked EMPATHY_DISTILL_NAME=paper-stacked) unless these "
        "are set. Earlier defaults stay selectable by name: `paper-lexical` "
        "(EMPATHY_DISTILL_KIND=lexical EMPATHY_DISTILL_NAME=paper-lexical) and the cross-encoder "
        "`paper-minilm` (EMPATHY_DISTILL_KIND=cross-encoder EMPATHY_DISTILL_NAME=paper-minilm).",
    )
    distill_kind: Literal["stacked", "embed", "lexical", "finetune", "xenc-stacked", "cross-encoder"] = Field(
        default="xenc-stacked",
        description="stacked: a second stage over the lexical judge `distill_base_name` (ridge from its S/R, "
        "discard logit and lengths to S and R; the bucket rule's thresholds calibrated for macro-F1 on "
        "out-of-fold valid predictions, keeping the train discard goal; issue 18). embed: the stacked judge "
        "with a ridge over the reply's MiniLM embedding as a second first stage (`distilled:paper-embed`; "
        "EMPATHY_DISTILL_KIND=embed EMPATHY_DISTILL_NAME=paper-embed). lexical: TF-IDF ridge for "
        "S/R (valid scores) + a discard head learned from the paper's train keep/discard labels "
        "(`distill_discard_path`) with a calibrated threshold. finetune: MiniLM fine-tuned end to end as a "
        "cross-encoder (last turn + reply) with S/R and keep/discard heads, the stacked judge's calibrated "
        "bucket rule (`distilled:paper-xenc`; EMPATHY_DISTILL_KIND=finetune). xenc-stacked: the stacked "
        "judge with the fine-tuned cross-encoder `paper-xenc` (S, R, discard logit) as a second first stage, "
        "stacked on out-of-fold fine-tunes (`distilled:paper-xenc-stacked`). cross-encoder: fine-tuned "
        "MiniLM, S/R only.",
    )
    distill_base_name: str = Field(
        default="paper-lexical",
        description="The lexical judge the stacked judge builds on (fitted first if missing; reused as it "
        "is when present).",
    )
    distill_discard_path: Path = Field(
        default=Path("../shared/data/efficient-empathy/train_discard.json"),
        description="The paper's discarded train samples (`qwen_train_discard_v1.json`): a keep/discard "
        "label for every train listener turn, for the lexical judge's discard head.",
    )
    distill_discard_calibration: Literal["f1", "fraction"] = Field(
        default="f1",
        description="Threshold of the discard head, on held-out train conversations: f1 = best discard "
        "F1; fraction = discard as many as the paper (7.95%).",
    )
    distill_epochs: int = Field(
        default=3, ge=1, le=50,
        description="Fine-tuning epochs of the distilled judge (3: held-out Spearman S 0.55 / R 0.66, vs "
        "0.51 / 0.63 after 1 epoch; about 10 minutes on 2 CPU cores).",
    )
    distill_max_len: int = Field(
        default=128, ge=16, le=512, description="Tokens of `context [SEP] response` the judge reads."
    )
    distill_loss: Literal["dist", "mse"] = Field(
        default="dist",
        description="dist: cross-entropy on a distribution over scores 0-10 (prediction = expected value); "
        "mse: regression.",
    )
    distill_holdout: float = Field(
        default=0.2, gt=0, lt=1, description="Fraction of labels held out (by conversation) to measure it."
    )
    distill_seed: int = Field(default=0, description="Seed of the held-out split and of fine-tuning.")
    distill_threads: int = Field(
        default=0, ge=0, le=256,
        description="Torch CPU threads of the distilled judge (fit and scoring); 0 = torch's default.",
    )
    distill_batch_size: int = Field(
        default=64, ge=1, le=4096, description="Samples per forward pass when the distilled judge scores."
    )
