"""Settings owned by `ui/` (composed into `empathy.settings.Settings`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class UISettings(BaseSettings):
    ui_enabled: bool = Field(default=True, description="Mount the Gradio app at / of the gateway.")
    ui_max_tokens: int = Field(
        default=256, ge=1, le=4096, description="max_tokens of each reply the UI asks for."
    )
