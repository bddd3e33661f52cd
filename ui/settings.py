"""Settings owned by `ui/` (composed into `empathy.settings.Settings`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class UISettings(BaseSettings):
    ui_enabled: bool = Field(default=True, description="Mount the Gradio app at / of the gateway.")
