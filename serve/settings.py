"""Settings owned by `serve/` (composed into `empathy.settings.Settings`)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings


class SamplingDefaults(BaseModel):
    """Sampling fields added to a completion request that leaves them out (None: not added)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(default=0.7, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=0.9, gt=0, le=1, allow_inf_nan=False)
    repetition_penalty: float | None = Field(
        default=1.2, gt=0, le=2, allow_inf_nan=False,
        description="vLLM's multiplicative penalty on tokens already in the prompt or reply (1: none); "
        "added also when the request sets only `temperature`, so greedy replies do not loop.",
    )
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(default=160, ge=1)

    @cached_property
    def given(self) -> dict[str, Any]:
        """The fields with a value (those the gateway adds), computed once: on the path of every request."""
        return {name: value for name, value in self.model_dump().items() if value is not None}

    def merged(self, other: SamplingDefaults | None) -> SamplingDefaults:
        """These defaults with the fields `other` sets explicitly taking precedence."""
        return self if other is None else self.model_copy(update=other.model_dump(exclude_unset=True))


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
    vllm_nice: int = Field(
        default=10, ge=0, le=19,
        description="Niceness of the vLLM children (every process and thread): on a machine shared with "
        "the engine, the gateway and its clients then get a core as soon as they wake (bench: the gateway's "
        "share of the first-token time at c=8 3.7 -> 2.2 ms, tok/s unchanged). 0: the gateway's own.",
    )
    moe_serve: bool = Field(
        default=True,
        description="Serve `<data_dir>/moe` (the experts' token-level MoE from `empathy train moe`) as model "
        "`empathy-moe` from a second vLLM child, started only when that artifact exists. False: not served.",
    )
    moe_vllm_port: int = Field(default=8002, ge=1, le=65535, description="Port of the MoE's vLLM child.")
    moe_upstreams: list[str] = Field(
        default=[],
        description="URLs of vLLM servers that serve the MoE artifact as `empathy-moe` (with this package "
        "installed, whose vLLM plugin registers the architecture). Empty: the gateway starts the MoE child.",
    )
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
    router_runtime: Literal["onnx-int8", "onnx", "torch"] = Field(
        default="onnx-int8",
        description="How the gateway runs the router's sentence encoder: `onnx-int8` (ONNX Runtime on a "
        "graph with int8 weights, near ties re-checked in float32: see EMPATHY_ROUTER_INT8_MARGIN), `onnx` "
        "(the float32 graph alone: the torch embeddings to ~1e-6) or `torch` (the model as training runs "
        "it). The graphs are built from the torch model on first use and cached in "
        "~/.cache/empathy/router-encoder; bench/router_latency.py measures each runtime's latency and "
        "agreement with torch.",
    )
    router_int8_margin: float = Field(
        default=0.01, ge=0.0, le=1.0,
        description="`onnx-int8`: a context whose two most probable blends are less than this apart (in "
        "probability) is encoded again by the float32 graph and routed on that, so int8 rounding does not "
        "flip near ties (0: int8 alone, which chooses another blend than torch on ~4% of contexts).",
    )
    router_threads: int = Field(
        default=1, ge=1, le=64,
        description="Threads of the router's encoder in the gateway (ONNX runtimes). 1: the gateway shares "
        "the CPU with vLLM, and a second thread waits on a busy core more than it saves.",
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
    health_timeout: float = Field(
        default=5.0, gt=0,
        description="Seconds an engine's /health may take before the engine is taken out (an engine whose "
        "process died refuses the connection and is taken out at once; a busy one answers slowly).",
    )
    experiments_refresh: float = Field(
        default=5.0, gt=0,
        description="Seconds between reloads of the experiments from the store: an experiment created, "
        "changed or deleted through another gateway on the same database reaches this one within it.",
    )
    completion_write_delay: float = Field(
        default=0.05, ge=0, le=5,
        description="Seconds a finished reply's completion row may wait to be written with the rows of the "
        "replies that end meanwhile (one commit, off the reply's path). Feedback and results on this "
        "gateway wait for the rows they need; another gateway on the same database sees a row this much "
        "later (feedback there looks for an unknown id once more after it).",
    )
    upstream_timeout: float = Field(
        default=600.0, gt=0,
        description="Seconds a request to vLLM may take before it fails with 504 (a request whose client "
        "goes away is cancelled at once, upstream too).",
    )
    body_timeout: float = Field(
        default=30.0, gt=0,
        description="Seconds a client may take to send its whole request body; a slower or stalled body "
        "gets 408 and the connection is closed.",
    )
    max_json_depth: int = Field(
        default=32, ge=4, le=500,
        description="Deepest nesting of arrays and objects accepted in a request body; deeper gets 400.",
    )
    max_n: int = Field(
        default=4, ge=1, le=128,
        description="Most choices one completion request may ask for per prompt (`n`, `best_of`); more gets "
        "400.",
    )
    max_prompts: int = Field(
        default=32, ge=1, le=1024,
        description="Most prompts one batched text completion may carry; more gets 400.",
    )
    max_tokens_cap: int = Field(
        default=1024, ge=1,
        description="Largest `max_tokens` / `max_completion_tokens` a request may ask for; more gets 400.",
    )
    upstream_retries: int = Field(
        default=1, ge=0, le=5,
        description="Times a request is sent again after a broken connection to vLLM before any reply "
        "byte reached the client (the engine is not taken out for it).",
    )
    docs_access: Literal["open", "loopback", "key", "off"] = Field(
        default="loopback",
        description="Who may read /docs and /openapi.json: `open` anyone; `loopback` clients on this "
        "machine without a key, others with an API or admin key; `key` only with a key (open when no keys "
        "are configured); `off` nobody (404).",
    )
    metrics_access: Literal["open", "loopback", "key", "off"] = Field(
        default="loopback", description="Who may read /metrics (same values as EMPATHY_DOCS_ACCESS).",
    )
    sampling_defaults: SamplingDefaults = Field(
        default_factory=lambda: SamplingDefaults(),
        description="Sampling fields the gateway adds to a completion request that leaves them out (the "
        "client's values always win): greedy or vLLM-default replies of these small models loop.",
    )
    model_sampling: dict[str, SamplingDefaults] = Field(
        default={},
        description='Per-model sampling defaults by gateway model name (e.g. {"base": {"temperature": '
        '0.5}}); fields left out there come from EMPATHY_SAMPLING_DEFAULTS.',
    )

    sequential_method: Literal["gavi", "bounded"] = Field(
        default="gavi",
        description="Confidence sequences of experiment results (valid however often they are looked at): "
        "`gavi` uses the observed variance (GrowthBook's generalized anytime-valid intervals; narrower, "
        "asymptotic); `bounded` the largest variance of a [0, 1] value (exact at every count, wider).",
    )
    sequential_tuning_n: float = Field(
        default=1000.0, ge=10, le=1e8,
        description="Observations at which an experiment's confidence sequences are narrowest (sets the "
        "normal mixture's rho, like GrowthBook's tuning parameter): near the count an experiment is "
        "expected to reach. Smaller: earlier decisions on large effects, wider intervals later.",
    )
    votes_per_voter_per_day: int = Field(
        default=200, ge=0,
        description="Pairwise votes one voter may cast per UTC day (the `user` of POST /v1/feedback; the "
        "arena sends a random id kept in the browser; without one, the client's address); more get 429. "
        "0: no cap.",
    )
    sequential_min_n: int = Field(
        default=10, ge=2, le=100_000,
        description="Observations each arm needs before a `gavi` sequence can decide (its variance is "
        "estimated from them).",
    )

    @model_validator(mode="after")
    def _defaults_within_caps(self) -> ServeSettings:
        for name, defaults in {"sampling_defaults": self.sampling_defaults, **self.model_sampling}.items():
            if defaults.max_tokens is not None and defaults.max_tokens > self.max_tokens_cap:
                raise ValueError(f"{name}: max_tokens {defaults.max_tokens} exceeds EMPATHY_MAX_TOKENS_CAP "
                                 f"{self.max_tokens_cap}; lower one or raise the other.")
        return self
