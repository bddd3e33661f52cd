"""Training the MoE's gates (base and experts frozen) on the LM loss of the replies, resumable.

As the paper (mergoo's composition, gates trained on the full data for one epoch): each step is a batch of
prompt/completion samples, the loss the mean NLL of the reply tokens. The gates start at zero (the MoE
starts as the fixed 0.5 blend). A checkpoint (gates, optimizer, step) is written every `save_steps` to
`<out>.work/` with the job's fingerprint; a run started again with the same job continues from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from empathy.moe.artifact import ROUTED_CHOICES, write_artifact
from empathy.moe.lora_pack import ExpertLoRA, parse_peft
from training.moe.reference import MoeReference, build_reference

log = logging.getLogger("empathy.moe")
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class MoeJob:
    """Everything that decides the gates (plus where the artifact goes)."""

    base_model: str
    experts: tuple[tuple[str, Path], ...]  # (name, PEFT folder), sensibility first
    data_file: Path
    out_dir: Path
    routed: str = "mlp"  # mlp (as the paper) | all (attention routed too)
    learning_rate: float = 1e-3
    epochs: float = 1.0
    batch_size: int = 8
    max_length: int = 512
    seed: int = 42
    limit: int | None = None
    max_steps: int | None = None
    save_steps: int = 20
    bf16: bool = False  # matmuls under bf16 autocast (about twice as fast on CPUs with AVX512-BF16 or AMX)

    def settings(self) -> dict[str, Any]:
        data = asdict(self)
        data["experts"] = [name for name, _ in self.experts]
        for key in ("data_file", "out_dir", "save_steps"):
            data.pop(key)
        return data

    def fingerprint(self) -> str:
        from training.sft_data import file_sha256

        files = [self.data_file, *(folder / "adapter_model.safetensors" for _, folder in self.experts)]
        payload = json.dumps({**self.settings(), "files": [file_sha256(f) for f in files]}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_experts(job: MoeJob, n_layers: int) -> list[ExpertLoRA]:
    from training.blend_files import load_expert

    out = []
    for name, folder in job.experts:
        loaded = load_expert(folder, name)
        out.append(parse_peft(name, loaded.tensors, loaded.scaling, n_layers))
    return out


def encode(tokenizer: Any, rows: Sequence[dict[str, Any]], max_length: int) -> list[Any]:
    """Token ids and reply span of each row (the router's scorer's tokenization, so NLLs compare)."""
    from training.router.nll import reply_span

    return [reply_span(tokenizer, row["messages"], max_length) for row in rows]


def batch_loss(model: Any, items: Sequence[Any], pad_id: int, bf16: bool = False) -> tuple[torch.Tensor, int]:
    """Mean NLL of the reply tokens of a left-padded batch, and the number of those tokens.

    Left padding puts every reply at the end of its row, so only the last positions go through the
    vocabulary projection (`logits_to_keep`, as the router's scorer); `bf16` runs the matmuls under bf16
    autocast (the gates and the loss stay float32)."""
    width = max(len(item.ids) for item in items)
    keep = max(item.end - item.start for item in items) + 1
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for row, item in enumerate(items):
        offset = width - len(item.ids)
        ids[row, offset:] = torch.tensor(item.ids)
        mask[row, offset:] = 1
        labels[row, offset + item.start:offset + item.end] = ids[row, offset + item.start:offset + item.end]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device), logits_to_keep=keep).logits[:, :-1]
    targets = labels[:, width - keep + 1:].to(device)
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), ignore_index=-100)
    return loss, int((targets != -100).sum())


def step_batches(lengths: Sequence[int], job: MoeJob, group: int = 8) -> list[list[int]]:
    """Row indices of every optimizer step: seeded shuffles, one per epoch, cut to max_steps. Each run of
    `group` batches of a shuffle is sorted by length first (as `group_by_length` in the experts' training):
    batches of similar lengths pad less, and a step costs what its longest row costs."""
    n = len(lengths)
    per_epoch = math.ceil(n / job.batch_size)
    total = job.max_steps or max(1, math.ceil(per_epoch * job.epochs))
    batches: list[list[int]] = []
    epoch = 0
    span = job.batch_size * group
    while len(batches) < total:
        order = list(range(n))
        random.Random(job.seed + epoch).shuffle(order)
        for start in range(0, n, span):
            chunk = sorted(order[start:start + span], key=lambda i: -lengths[i])
            batches += [chunk[s:s + job.batch_size] for s in range(0, len(chunk), job.batch_size)]
        epoch += 1
    return batches[:total]


def _resume(work: Path, fingerprint: str, moe: MoeReference, optimizer: torch.optim.Optimizer) -> int:
    path = work / CHECKPOINT
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True, map_location="cpu")
    if state.get("fingerprint") != fingerprint:
        log.warning("discarding the gate checkpoint in %s: it belongs to another job", work)
        return 0
    moe.load_gates(state["gates"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming gate training at step %d", state["step"])
    return int(state["step"])


def _save(work: Path, fingerprint: str, step: int, moe: MoeReference, optimizer: torch.optim.Optimizer
          ) -> None:
    tmp = work / f"{CHECKPOINT}.tmp"
    torch.save({"fingerprint": fingerprint, "step": step, "gates": moe.gate_state(),
                "optimizer": optimizer.state_dict()}, tmp)
    tmp.replace(work / CHECKPOINT)


def train_moe(job: MoeJob, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the gates and publish the artifact to `job.out_dir`; returns its metadata."""
    from tqdm import tqdm
    from transformers import AutoConfig, AutoTokenizer

    from training.sft_data import read_subset, take

    started = time.monotonic()
    rows = take(read_subset(job.data_file), job.limit, job.seed)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    items = encode(tokenizer, rows, job.max_length)
    experts = load_experts(job, AutoConfig.from_pretrained(job.base_model).num_hidden_layers)
    routed = ROUTED_CHOICES[job.routed]
    moe = build_reference(job.base_model, experts, routed).to("cuda" if torch.cuda.is_available() else "cpu")
    optimizer = torch.optim.AdamW(moe.gates.parameters(), lr=job.learning_rate, weight_decay=0.0)
    fingerprint = job.fingerprint()
    work = job.out_dir.with_name(f".{job.out_dir.name}.work")
    work.mkdir(parents=True, exist_ok=True)
    batches = step_batches([len(item.ids) for item in items], job)
    step = _resume(work, fingerprint, moe, optimizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    losses: list[float] = []
    moe.train()
    bar = tqdm(total=len(batches), initial=step, desc="gates", unit="step", disable=not progress)
    for index in range(step, len(batches)):
        loss, _ = batch_loss(moe, [items[i] for i in batches[index]], pad, job.bf16)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if (index + 1) % job.save_steps == 0:
            _save(work, fingerprint, index + 1, moe, optimizer)
    bar.close()
    meta = {"fingerprint": fingerprint, "settings": job.settings(), "samples": len(items),
            "steps": len(batches), "resumed_from_step": step, "final_loss": losses[-1] if losses else None,
            "first_loss": losses[0] if losses else None, "wall_time_s": round(time.monotonic() - started, 2),
            "data_file": str(job.data_file.resolve()),
            "experts": {name: str(folder.resolve()) for name, folder in job.experts},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_artifact(job.out_dir, job.base_model, experts, routed, moe.gate_state(), meta)
    shutil.rmtree(work)
    return meta


def is_up_to_date(job: MoeJob) -> bool:
    from empathy.moe.artifact import META_FILE

    meta = job.out_dir / META_FILE
    try:
        return json.loads(meta.read_text()).get("fingerprint") == job.fingerprint()
    except (OSError, ValueError):
        return False


def compose(base_model: str, experts: Sequence[tuple[str, Path]], out_dir: Path, routed: str = "mlp",
            gates: dict[str, torch.Tensor] | None = None, meta: dict[str, Any] | None = None) -> Path:
    """An artifact from the experts and given gates (default: zero gates, i.e. the fixed 0.5 blend)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_model)
    job = MoeJob(base_model=base_model, experts=tuple(experts), data_file=Path(), out_dir=out_dir,
                 routed=routed)
    loaded = load_experts(job, config.num_hidden_layers)
    modules = ROUTED_CHOICES[routed]
    if gates is None:
        from empathy.moe.lora_pack import ExpertSpec, layer_kinds

        n, hidden, specs = len(loaded), config.hidden_size, [ExpertSpec.of(e) for e in loaded]
        gates = {f"{layer}.{kind}.{part}": torch.zeros((n, hidden) if part == "weight" else (n,))
                 for layer in range(config.num_hidden_layers) for kind in layer_kinds(specs, modules, layer)
                 for part in ("weight", "bias")}
    return write_artifact(out_dir, base_model, loaded, modules, gates, meta or {"composed": True})
