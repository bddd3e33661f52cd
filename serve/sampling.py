"""Per-model default sampling: the fields a completion request leaves out, filled from the settings (pure).

Greedy replies of the small served models loop ("I'm so sorry for your loss." eight times) and vLLM's own
default (temperature 1.0, no penalty) hides the loops behind wandering text; so the gateway adds a
temperature, top_p, a repetition penalty and max_tokens to each request that does not set them. A value the
client sends always wins; a request that sets only `temperature: 0` still gets the repetition penalty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serve.settings import SamplingDefaults

if TYPE_CHECKING:
    from empathy.settings import Settings


def defaults_for(settings: Settings, model: str) -> SamplingDefaults:
    """The defaults of gateway model `model`: EMPATHY_MODEL_SAMPLING[model] over EMPATHY_SAMPLING_DEFAULTS."""
    return settings.sampling_defaults.merged(settings.model_sampling.get(model))


def with_defaults(body: dict[str, Any], defaults: SamplingDefaults) -> dict[str, Any]:
    """`body` with each default field it leaves out (absent or null) added; `max_tokens` is not added
    when the request sets `max_completion_tokens`."""
    added = {}
    for name, value in defaults.given.items():
        if body.get(name) is not None:
            continue
        if name == "max_tokens" and body.get("max_completion_tokens") is not None:
            continue
        added[name] = value
    return {**body, **added}
