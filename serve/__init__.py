"""Serve: an OpenAI-compatible gateway over vLLM with routing, experiments and feedback."""
