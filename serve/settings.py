"""Settings owned by `serve/` (composed into `empathy.settings.Settings`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ServeSettings(BaseSettings):
    host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port of the gateway (API at /v1, UI at /).")
    upstreams: list[str] = Field(
        default=[],
        description="URLs of vLLM OpenAI servers run elsewhere. Empty: start one vLLM child process.",
    )
    vllm_port: int = Field(default=8001, ge=1, le=65535, description="Port of the vLLM child process.")
    vllm_kvcache_gib: int = Field(default=2, ge=1, description="VLLM_CPU_KVCACHE_SPACE of the child (GiB).")
    vllm_max_model_len: int = Field(default=2048, ge=64, description="--max-model-len of the child.")
    vllm_start_timeout: float = Field(
        default=900.0, gt=0, description="Seconds the vLLM child may take to become healthy before a restart."
    )
    vllm_extra_args: list[str] = Field(default=[], description="Extra arguments for the vLLM child.")
    api_keys: list[str] = Field(
        default=[], description="Bearer keys accepted by /v1. Empty: no authentication."
    )
    admin_key: str | None = Field(
        default=None, description="Bearer key for admin endpoints. Unset: admin endpoints are disabled."
    )
    experiments_file: str | None = Field(
        default=None,
        description="TOML or YAML file defining experiments (name, arms with model and weight). "
        "Loaded at start; the admin API can add or edit experiments too.",
    )
    default_blend: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Blend weight used for model `empathy` when no router artifact exists (source=default).",
    )
    max_body_bytes: int = Field(
        default=2_000_000, ge=1024, description="Largest request body accepted (bytes); larger gets 413."
    )
    sticky_sessions: int = Field(
        default=10_000, ge=1, description="Conversations whose routing decision is remembered (LRU)."
    )
    health_interval: float = Field(
        default=2.0, gt=0, description="Seconds between health checks of each vLLM engine."
    )
    upstream_timeout: float = Field(
        default=600.0, gt=0, description="Seconds a request to vLLM may take before it fails with 504."
    )
