"""The paper's token-level MoE of the two experts (`empathy-moe`): gates, artifact, transformers reference."""
