"""Training: base model, LoRA experts, exact blends, the learned router, evaluation."""
