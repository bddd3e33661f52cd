"""The fine-tuned judge (artifact kind `finetune`, e.g. `distilled:paper-xenc`): all-MiniLM-L6-v2 fine-tuned
end to end as a cross-encoder over `[CLS] last speaker turn [SEP] listener reply [SEP]`, with one linear
head on the mean-pooled output giving

- per criterion (S, R) a distribution over the integer scores 0..10 (the "dist" readout: its expected
  value), learned from the paper's valid-split scores with cross-entropy against a Gaussian-smoothed target,
  and beside it a plain regression of S and R (the "mse" readout, mean squared error); the fit keeps the
  readout that ranks the calibration conversations better;
- a keep/discard logit, learned from the paper's train keep/discard labels (all discards, a fresh sample of
  keeps each epoch).

Multi-task: every batch holds one task; the two kinds of batches are shuffled together. Then the bucket
rule of the stacked judge (`stacked.BucketRule`) is calibrated on valid conversations held out of the
fine-tuning (`fit_finetune.py`). The model and inference are here; the training loop in `finetune_train.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from selection.distill.encoder import N_SCORES, EncoderConfig, collate, encode_pairs
from selection.distill.lexical import LexicalInput
from selection.distill.stacked import BucketRule, StackedModel

KIND = "finetune"
WEIGHTS_FILE = "finetune.safetensors"
ENCODER_DIR = "encoder"  # the encoder's config and tokenizer (the weights are in WEIGHTS_FILE)
ONNX_FILE = "finetune.onnx"  # the same net exported for ONNX Runtime (runtime "onnx")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
Readout = Literal["dist", "mse"]
READOUTS: tuple[Readout, ...] = ("dist", "mse")


@dataclass(frozen=True)
class FinetuneOptions:
    holdout: float = 0.2  # valid and train conversations held out to measure (the other judges' split)
    seed: int = 0
    calibration: float = 0.2  # share of the remaining valid conversations kept out of fine-tuning
    max_len: int = 128
    max_response_tokens: int = 64
    epochs: int = 3
    batch_size: int = 32  # 27.6 items/s with bf16 on 2 idle cores (16: 11.3)
    lr: float = 8e-5
    head_lr: float = 1e-3
    warmup: float = 0.06
    sigma: float = 1.0
    mse_weight: float = 0.1  # of the regression readout's loss beside the distribution's cross-entropy
    discard_weight: float = 1.0
    keeps_per_discard: float = 2.0  # train keeps sampled per train discard each epoch (all discards)
    freeze_embeddings: bool = True  # the word-embedding table is 45% of MiniLM; updating it is slow on CPU
    bf16: bool = True  # autocast on CPU (AMX): ~2.8x faster matmuls than fp32
    runtime: Literal["torch", "onnx"] = "torch"  # what scores (the held-out numbers are measured with it)
    min_precision: float = 0.42  # the rule's train discard check, as the stacked judge's
    min_recall: float = 0.6

    def config(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}

    def pair_config(self) -> EncoderConfig:
        return EncoderConfig(max_len=self.max_len, max_response_tokens=self.max_response_tokens)


class FinetuneNet(nn.Module):
    """Encoder + mean pooling + a linear head: (b, 2, 11) score logits, (b, 2) regressed scores and a (b,)
    discard logit."""

    grid: torch.Tensor

    def __init__(self, encoder: nn.Module, hidden: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden, 2 * N_SCORES + 3)
        self.register_buffer("grid", torch.arange(N_SCORES, dtype=torch.float32), persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        out = self.head(pooled).float()
        return out[:, : 2 * N_SCORES].view(-1, 2, N_SCORES), out[:, 2 * N_SCORES: -1] + 5.0, out[:, -1]

    def scores(self, logits: torch.Tensor, regressed: torch.Tensor) -> torch.Tensor:
        """(b, 4): expected S, R of the (b, 2, 11) logits ("dist"), then the regressed S, R ("mse")."""
        return torch.cat([(logits.softmax(-1) * self.grid).sum(-1), regressed.clamp(0.0, 10.0)], dim=1)


def build_net(encoder_path: Path, freeze_embeddings: bool = True) -> tuple[FinetuneNet, Any]:
    """The net over the pretrained encoder at `encoder_path` (a Hugging Face folder) and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    encoder = AutoModel.from_pretrained(str(encoder_path))
    if freeze_embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)
    return FinetuneNet(encoder, int(encoder.config.hidden_size)), tokenizer


def encode_rows(tokenizer: Any, rows: Sequence[LexicalInput], opts: FinetuneOptions) -> list[list[int]]:
    """Token ids of (last turn, reply) pairs: the reply capped, the turn keeps its end."""
    return encode_pairs(tokenizer, [r.last_turn for r in rows], [r.response for r in rows],
                        opts.pair_config())


def autocast(enabled: bool) -> Any:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


Runner = Callable[[dict[str, torch.Tensor]], tuple[np.ndarray, np.ndarray]]


def torch_runner(net: FinetuneNet, bf16: bool) -> Runner:
    """A padded batch -> (b, 4) scores (`FinetuneNet.scores`) and (b,) P(discard), by torch (bf16 autocast
    if asked)."""
    def run(batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        net.eval()
        with torch.inference_mode(), autocast(bf16):
            logits, regressed, d = net(batch)
            return net.scores(logits, regressed).double().numpy(), torch.sigmoid(d).double().numpy()

    return run


def predict_batches(run: Runner, tokenizer: Any, seqs: Sequence[list[int]], batch_size: int = 64,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) scores (both readouts) and (n,) P(discard) of `seqs` in input order (batches sorted by
    length)."""
    from tqdm import tqdm

    sr = np.zeros((len(seqs), 4), dtype=np.float64)
    p = np.zeros(len(seqs), dtype=np.float64)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc="predict", unit="batch", disable=not progress):
        sr[idx], p[idx] = run(collate([seqs[i] for i in idx], tokenizer.pad_token_id, tokenizer.sep_token_id))
    return sr, p


def export_onnx(net: FinetuneNet, path: Path) -> Path:
    """The net (fp32) as an ONNX graph with outputs `sr` (b, 4: `FinetuneNet.scores`) and `p` (b,
    P(discard)), written atomically."""
    import os
    import warnings

    class Outputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            logits, regressed, d = self.net({"input_ids": input_ids, "attention_mask": attention_mask,
                                             "token_type_ids": token_type_ids})
            return self.net.scores(logits, regressed), torch.sigmoid(d)

    example = collate([[101, 2023, 102, 2003, 102], [101, 102, 2009, 102]], 0, 102)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants that do not vary here
        torch.onnx.export(Outputs().eval(), tuple(example[n] for n in ONNX_INPUTS), str(partial),
                          input_names=list(ONNX_INPUTS), output_names=["sr", "p"], opset_version=17,
                          dynamo=False, dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ONNX_INPUTS})
    os.replace(partial, path)
    return path


class OnnxNet:
    """An exported net run by ONNX Runtime (`threads`: torch's thread count unless given)."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads or torch.get_num_threads(), 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        sr, p = self.session.run(None, {n: batch[n].numpy() for n in ONNX_INPUTS})
        return np.asarray(sr, dtype=np.float64), np.asarray(p, dtype=np.float64)


def readout_scores(scores: np.ndarray, readout: Readout) -> np.ndarray:
    """(n, 2) S, R of one readout from the (n, 4) scores of both."""
    return scores[:, :2] if readout == "dist" else scores[:, 2:]


@dataclass
class FinetuneModel(StackedModel):
    """The fine-tuned net with the stacked judge's bucket rule and outputs (`StackedModel.predict`:
    stored S, R, P(discard), discard decision); `base` and `stacker` are unused (None)."""

    net: Any = None
    tokenizer: Any = None
    options: FinetuneOptions = FinetuneOptions()
    batch_size: int = 64
    readout: Readout = "dist"  # which S, R the judge gives (`FinetuneNet.scores`), chosen by the fit
    onnx: OnnxNet | None = None  # set by `use_onnx`: the runtime that scores

    def use_onnx(self, folder: Path, export: bool = False) -> None:
        """Score through ONNX Runtime from `folder`'s graph (exported first when missing or `export`)."""
        path = folder / ONNX_FILE
        if export or not path.is_file():
            export_onnx(self.net, path)
        self.onnx = OnnxNet(path)

    def predict_rows(self, rows: Sequence[LexicalInput], progress: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(n, 4) scores of both readouts and (n,) P(discard)."""
        seqs = encode_rows(self.tokenizer, rows, self.options)
        run = self.onnx if self.onnx is not None else torch_runner(self.net, self.options.bf16)
        return predict_batches(run, self.tokenizer, seqs, self.batch_size, progress)

    def raw_scores(self, rows: Sequence[LexicalInput]) -> tuple[np.ndarray, np.ndarray]:
        scores, p = self.predict_rows(rows)
        return readout_scores(scores, self.readout), p

    def save(self, folder: Path) -> Path:
        """The weights (fp32) with the rule and options in their metadata, so the version hash covers them;
        the encoder's config and tokenizer beside them."""
        from safetensors.torch import save_file

        self.net.encoder.config.save_pretrained(str(folder / ENCODER_DIR))
        self.tokenizer.save_pretrained(str(folder / ENCODER_DIR))
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        meta = {"rule": json.dumps(asdict(self.rule)), "options": json.dumps(asdict(self.options)),
                "readout": self.readout}
        save_file(state, str(folder / WEIGHTS_FILE), metadata=meta)
        return folder / WEIGHTS_FILE

    @staticmethod
    def load(folder: Path) -> FinetuneModel:
        from safetensors import safe_open
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config = AutoConfig.from_pretrained(str(folder / ENCODER_DIR))
        net = FinetuneNet(AutoModel.from_config(config), int(config.hidden_size))
        net.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        with safe_open(str(folder / WEIGHTS_FILE), "pt") as f:
            meta = f.metadata()
        net.eval()
        options = FinetuneOptions(**json.loads(meta["options"]))
        model = FinetuneModel(None, None, BucketRule(**json.loads(meta["rule"])), net=net,
                              tokenizer=AutoTokenizer.from_pretrained(str(folder / ENCODER_DIR)),
                              options=options, readout=cast(Readout, meta["readout"]))
        if options.runtime == "onnx":
            model.use_onnx(folder)
        return model
