"""The LLM judge: any OpenAI-compatible endpoint (OpenAI, a vLLM server) through the `openai` async client.

One request per sample, asking for `{"sensibility": n, "rationality": n}` under a JSON schema (structured
output), with `top_logprobs` so the score is a G-Eval expectation where the endpoint returns them. The
client's own retries are off; ours apply (exponential backoff with jitter on 429/5xx/timeouts/connection
errors; unparsable replies are asked again, then recorded as failed with the raw text).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import openai
from openai import AsyncOpenAI

from empathy.errors import JudgeError
from selection.judges.base import Judge, Score
from selection.judges.geval import TokenLogprobs, geval_scores, parse_scores
from selection.judges.prompt import PROMPT_VERSION, build_messages, response_schema
from selection.sample import Sample

if TYPE_CHECKING:
    from empathy.settings import Settings

TRANSIENT = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
FATAL_STATUS = {401, 403, 404}
MAX_TOKENS = 48
TOP_LOGPROBS = 20
SCORE_VALUE = "(10|[1-9])"
SCORE_REGEX = rf'\{{"sensibility": {SCORE_VALUE}, "rationality": {SCORE_VALUE}\}}'


def api_base(url: str) -> str:
    """The OpenAI base URL: a bare `http://host:port` (a vLLM server) gets its `/v1`."""
    url = url.rstrip("/")
    return url if urlsplit(url).path else f"{url}/v1"


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter (seconds) before retry number `attempt` (0-based)."""
    return random.uniform(0, min(cap, base * 2**attempt))


def token_logprobs(choice: Any) -> list[TokenLogprobs]:
    content = getattr(getattr(choice, "logprobs", None), "content", None) or []
    return [TokenLogprobs(item.token, {alt.token: alt.logprob for alt in (item.top_logprobs or [])})
            for item in content]


def score_from_choice(sample_id: str, choice: Any) -> Score | None:
    """A Score from one completion choice, or None when the reply holds no valid scores."""
    text = choice.message.content or ""
    parsed = parse_scores(text)
    if parsed is None:
        return None
    weighted = geval_scores(token_logprobs(choice)) or {}
    return Score(sample_id, weighted.get("sensibility", float(parsed["sensibility"])),
                 weighted.get("rationality", float(parsed["rationality"])), raw=text)


class OpenAIJudge(Judge):
    def __init__(self, *, url: str, model: str, api_key: str = "EMPTY", concurrency: int = 8,
                 max_retries: int = 4, timeout: float = 120.0, structured: bool = True,
                 logprobs: bool = True) -> None:
        self.url = api_base(url)
        self.model = model
        self.judge_id = f"openai:{model}"
        self.version = PROMPT_VERSION
        self.batch_size = 1
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.structured = structured
        self.logprobs = logprobs
        self.client = AsyncOpenAI(base_url=self.url, api_key=api_key, timeout=timeout, max_retries=0)
        self._checked = False
        self._vllm = False  # set by check(): vLLM takes a whitespace-free JSON constraint
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIJudge:
        return cls(url=settings.judge_url, model=settings.judge_model, api_key=settings.judge_api_key,
                   concurrency=settings.judge_concurrency, max_retries=settings.judge_max_retries,
                   timeout=settings.judge_timeout)

    def _unreachable(self, exc: Exception) -> JudgeError:
        return JudgeError(f"judge endpoint {self.url} is unreachable ({type(exc).__name__}: {exc}). Start an "
                          "OpenAI-compatible server there or pass the right one with --judge-url / "
                          "EMPATHY_JUDGE_URL.")

    async def check(self) -> None:
        """Fail fast: the endpoint answers `/models` and serves `self.model`."""
        async with self._lock:
            if self._checked:
                return
            try:
                models = [model async for model in self.client.models.list()]
            except openai.APIStatusError as exc:
                raise JudgeError(f"judge endpoint {self.url}/models answered HTTP {exc.status_code}: "
                                 f"{exc.message}. Check --judge-url / EMPATHY_JUDGE_URL and the API key "
                                 "(EMPATHY_JUDGE_API_KEY).") from exc
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                raise self._unreachable(exc) from exc
            served = [model.id for model in models]
            if self.model not in served:
                raise JudgeError(f"judge model {self.model!r} is not served at {self.url}; it serves "
                                 f"{served}. Pass one with --judge-model / EMPATHY_JUDGE_MODEL.")
            self._vllm = any(getattr(m, "owned_by", "") == "vllm" for m in models if m.id == self.model)
            self._checked = True

    async def score(self, samples: Sequence[Sample]) -> list[Score]:
        await self.check()
        return list(await asyncio.gather(*(self._score_one(sample) for sample in samples)))

    def _request(self, sample: Sample, attempt: int) -> dict[str, Any]:
        # Greedy first; a retry after an unparsable reply samples, so it can come out differently.
        request: dict[str, Any] = {"model": self.model, "messages": build_messages(sample),
                                   "max_tokens": MAX_TOKENS, "temperature": 0.0 if attempt == 0 else 1.0}
        if self.structured and self._vllm:
            # vLLM's own constraint, a regex for the exact compact JSON: `response_format` allows any
            # whitespace between JSON tokens, and a weak model loops on it until max_tokens.
            request["extra_body"] = {"structured_outputs": {"regex": SCORE_REGEX}}
        elif self.structured:
            request["response_format"] = {"type": "json_schema", "json_schema": response_schema()}
        if self.logprobs:
            request.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return request

    async def _score_one(self, sample: Sample) -> Score:
        last_raw, last_error = "", "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(backoff_delay(attempt - 1))
            try:
                reply = await self.client.chat.completions.create(**self._request(sample, attempt))
            except openai.APIStatusError as exc:
                if exc.status_code in FATAL_STATUS:
                    raise JudgeError(f"judge endpoint {self.url} answered HTTP {exc.status_code} for model "
                                     f"{self.model!r}: {exc.message}") from exc
                last_error = f"HTTP {exc.status_code}: {exc.message}"
                if not isinstance(exc, TRANSIENT) and exc.status_code != 408:
                    break  # a 4xx about this sample (e.g. too long): asking again will not help
                continue
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            choice = reply.choices[0]
            score = score_from_choice(sample.id, choice)
            if score is not None:
                return score
            last_raw = choice.message.content or ""
            last_error = f"unparsable reply (finish_reason={choice.finish_reason})"
        if last_error.startswith("APIConnectionError"):
            raise self._unreachable(RuntimeError(last_error))
        return Score(sample.id, None, None, raw=last_raw, error=last_error)

    async def aclose(self) -> None:
        await self.client.close()
