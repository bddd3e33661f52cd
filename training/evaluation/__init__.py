"""Evaluation: the paper's metrics (pure) and generation through vLLM."""
