"""Request and response bodies of every endpoint, as pydantic models: the OpenAPI spec (/openapi.json)
describes them, and completion requests are checked against them at the edge.

Completion requests keep every field the client sent (`extra="allow"`): unknown OpenAI or vLLM fields are
passed to vLLM unchanged; the gateway forwards the raw body, never a re-serialized model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from serve.experiments import Experiment
from serve.settings import SamplingDefaults

Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error the gateway returns (the shape the `openai` SDK parses)."""

    error: ErrorBody


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Invalid request (bad JSON, field, number, Unicode or nesting)."),
    401: _error("Missing or wrong key."), 403: _error("Not allowed (admin endpoints, disabled access)."),
    404: _error("Unknown model, completion or experiment."), 408: _error("The body did not arrive in time."),
    413: _error("Body too large."),
}
FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 409: _error("This voter already voted on this pair of completions."),
    429: _error("This voter reached today's vote cap (EMPATHY_VOTES_PER_VOTER_PER_DAY; Retry-After)."),
}
UPSTREAM_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 429: _error("vLLM is overloaded (Retry-After passed on)."),
    502: _error("vLLM answered with something that is not a valid reply (its status in x-upstream-status)."),
    503: _error("No engine is ready (Retry-After)."), 504: _error("vLLM did not answer in time."),
}


# ---- the `empathy` extension ------------------------------------------------------------------------

class EmpathyOverride(BaseModel):
    """Request field `empathy`: for model `empathy` a blend weight on the grid or an expert; for an
    experiment the arm to use (the arena)."""

    model_config = ConfigDict(extra="forbid")
    blend: Finite | None = Field(default=None, ge=0, le=1)
    expert: str | None = None
    arm: str | None = None


class EmpathyRoute(BaseModel):
    """Response field `empathy` (first chunk of a stream): what served the request, and why."""

    adapter: str
    blend: float | None
    source: Literal["router", "sticky", "override", "experiment", "default", "fixed"]
    experiment: str | None
    arm: str | None
    probs: list[float] | None


# ---- requests --------------------------------------------------------------------------------------

class _Sampling(_Open):
    model: str = Field(min_length=1, description="A name from GET /v1/models.")
    temperature: Finite | None = Field(default=None, ge=0, le=2)
    top_p: Finite | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, description="Capped by EMPATHY_MAX_N.")
    max_tokens: int | None = Field(default=None, ge=0, description="Capped by EMPATHY_MAX_TOKENS_CAP.")
    stream: bool | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = Field(default=None, description="Identifies the user (sticky routing, arms).")
    presence_penalty: Finite | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: Finite | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: Finite | None = Field(default=None, gt=0, le=2, description="vLLM extension.")
    logprobs: Any = None
    empathy: EmpathyOverride | None = None


class ContentPart(_Open):
    type: str
    text: str | None = None


class ChatMessage(_Open):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(_Sampling):
    """OpenAI chat completion request (vLLM's extra fields are passed through)."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logprobs: bool | None = None
    response_format: dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    """OpenAI text completion request (vLLM's extra fields are passed through)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool | None = None


# ---- responses -------------------------------------------------------------------------------------

class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int


class ChatChoice(_Open):
    index: int
    message: dict[str, Any]
    finish_reason: str | None = None


class ChatCompletion(_Open):
    """A chat completion as vLLM returns it, plus the `empathy` field. With `stream: true` the body is
    `text/event-stream` of chat.completion.chunk events, the first carrying `empathy`."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    empathy: EmpathyRoute


class TextChoice(_Open):
    index: int
    text: str
    finish_reason: str | None = None


class Completion(_Open):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None
    empathy: EmpathyRoute


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    sampling: SamplingDefaults = Field(description="Sampling fields the gateway adds when a request "
                                       "leaves them out (null: not added).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def completion_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "content": {"text/event-stream": {"schema": {"type": "string"}}},
                  "description": "JSON, or server-sent events with `stream: true`."}, **UPSTREAM_ERRORS}


# ---- feedback --------------------------------------------------------------------------------------

class Rating(BaseModel):
    type: Literal["rating"]
    completion_id: str = Field(min_length=1, max_length=128)
    value: Finite
    scale: Literal["thumbs", "likert"] = "thumbs"

    @model_validator(mode="after")
    def _in_scale(self) -> Rating:
        ok = self.value in (0, 1) if self.scale == "thumbs" else 1 <= self.value <= 5
        if not ok:
            raise ValueError(f"value {self.value} is not on the {self.scale} scale "
                             "(thumbs: 0 or 1; likert: 1 to 5)")
        return self


class Pairwise(BaseModel):
    type: Literal["pairwise"]
    completion_a: str = Field(min_length=1, max_length=128)
    completion_b: str = Field(min_length=1, max_length=128)
    outcome: Literal["a", "b", "tie", "both_bad"]
    user: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="Who votes (a stable id, like `user` of a chat request): one vote per voter and pair of "
        "completions, at most EMPATHY_VOTES_PER_VOTER_PER_DAY per UTC day. Without it, the client's address.")

    @model_validator(mode="after")
    def _two_completions(self) -> Pairwise:
        if self.completion_a == self.completion_b:
            raise ValueError("completion_a and completion_b must differ")
        return self


FeedbackItem = Annotated[Rating | Pairwise, Field(discriminator="type")]
Feedback: TypeAdapter[Rating | Pairwise] = TypeAdapter(FeedbackItem)


class FeedbackRecorded(BaseModel):
    object: Literal["feedback"] = "feedback"
    id: int
    type: Literal["rating", "pairwise"]
    status: Literal["recorded"] = "recorded"


# ---- experiments, admin, health --------------------------------------------------------------------

class ExperimentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool | None = None
    description: str | None = Field(default=None, max_length=2000)


class ExperimentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Experiment]


class ExperimentDeleted(BaseModel):
    name: str
    deleted: Literal[True] = True


class ArmResult(_Open):
    name: str
    model: str
    weight: float
    assigned_users: int
    completions: int
    thumbs: dict[str, float | int | None]
    likert: dict[str, float | int | None]
    win_rate: dict[str, Any]
    bradley_terry: dict[str, float]
    bradley_terry_lc: dict[str, float] | None = Field(
        default=None, description="Bradley-Terry with reply-length control (Elo scale, 95% interval) over "
        "the votes whose replies have a stored length; None when the arm has none.")
    reply_tokens_mean: float | None = Field(default=None, description="Mean reply length in tokens.")
    latency_ms_p50: float | None
    ttft_ms_p50: float | None


class ExperimentResults(BaseModel):
    experiment: str
    active: bool
    since: float | None = Field(description="Start of the counted period (Unix time): the experiment's "
                                "creation.")
    votes: int
    arms: list[ArmResult]
    pairwise: list[dict[str, Any]]
    pairs: list[dict[str, Any]] = Field(
        default=[], description="Per pair of arms and metric (win_rate, thumbs, likert): the anytime-valid "
        "confidence sequence now (low, high) beside the fixed-horizon interval, the Holm-corrected "
        "`decision` (`<arm> ahead` or `not yet`) and the sequence over observations (`trace`).")
    sequential: dict[str, Any] = Field(default={}, description="How the sequences were computed.")
    length_control: dict[str, Any] = Field(
        default={}, description="The length-controlled Bradley-Terry fit: `votes` used, `length_coef` (> 0: "
        "the longer reply wins more often at equal strength, per standard deviation of the normalised length "
        "difference) with its standard error, and `length_effect` in words.")
    srm: dict[str, Any] = Field(
        default={}, description="Sample-ratio check: assignments per arm against the weights (chi-square); "
        "`mismatch` when p < threshold.")


class Reloaded(BaseModel):
    grid: list[float]
    experts: dict[str, str]
    router: bool
    engine_restarted: bool


class EngineHealth(_Open):
    engine: int
    healthy: bool
    outstanding: int
    state: str
    supervised: bool | None = None
    restarts: int | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    gateway: Literal["ok"]
    engines: list[EngineHealth]
    router: bool
    grid: list[float]


# Request bodies per (path, method): FastAPI cannot see them (handlers read the raw body), so the spec
# gets them here.
REQUEST_BODIES: dict[tuple[str, str], type[BaseModel] | Any] = {
    ("/v1/chat/completions", "post"): ChatCompletionRequest,
    ("/v1/completions", "post"): CompletionRequest,
    ("/v1/feedback", "post"): FeedbackItem,
    ("/v1/experiments", "post"): Experiment,
    ("/v1/experiments/{name}", "put"): Experiment,
    ("/v1/experiments/{name}", "patch"): ExperimentPatch,
}
