"""The experts' token-level MoE as an artifact: its format (`artifact`) and the LoRA packing maths
(`lora_pack`), in core because training writes it and serve's vLLM model reads it."""
