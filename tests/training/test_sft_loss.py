"""The reply-only loss head equals TRL's own loss (padded and padding-free batches), in fp32."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training.experts import ExpertJob, build_trainer
from training.sft_data import read_subset
from training.sft_loss import reply_loss


@pytest.mark.parametrize("padding_free", [False, True])
def test_reply_loss_matches_trl(tmp_path: Path, tiny_artifacts: Path, tiny_model_dir: Path,
                                padding_free: bool) -> None:
    subset = tiny_artifacts / "subsets" / "sensibility.jsonl"
    rows = read_subset(subset)[:8]
    job = ExpertJob(subset="sensibility", subset_file=subset, out_dir=tmp_path / "out",
                    base_model=str(tiny_model_dir), batch_size=8, max_steps=1)
    trainer = build_trainer(replace(job, bf16=False, padding_free=padding_free), rows, tmp_path / "ck")
    batch = next(iter(trainer.get_train_dataloader()))
    assert ("attention_mask" in batch) != padding_free
    trainer.model.eval()
    with torch.no_grad():
        reference = trainer.model(**batch, fused_lm_head=True).loss  # TRL's fused head
        ours = reply_loss(trainer.model, batch)
    assert float(ours) == pytest.approx(float(reference), rel=1e-4)
