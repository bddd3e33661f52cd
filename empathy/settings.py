"""The one settings object of a process: pydantic-settings, `EMPATHY_` prefix, `.env` supported.

Each package declares the fields it owns in its own `settings.py` (a mixin); this module composes them.
Build it with `get_settings()`; never at import time. CLI flags override fields by passing keyword
arguments to `get_settings(**overrides)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from selection.settings import SelectionSettings
from serve.settings import ServeSettings
from training.settings import TrainingSettings
from ui.settings import UISettings


class CoreSettings(BaseSettings):
    """Fields every stage uses."""

    data_dir: Path = Field(
        default=Path(".empathy"),
        description="Where every artifact lives: the SQLite store, subsets, base model, experts, blends, "
        "router, eval runs. Relative paths are taken from the current directory.",
    )
    store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store (scores, experiments, feedback). Default: a SQLite file "
        "`<data_dir>/empathy.db`. PostgreSQL: `postgresql+psycopg://user:pass@host/db`.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of every logger of the process."
    )

    def resolved_store_url(self) -> str:
        from empathy.layout import Layout

        return self.store_url or f"sqlite:///{Layout(self.data_dir).store_db.resolve()}"


# Listed last-first so that `empathy config` shows core fields first (pydantic orders fields by reverse MRO).
class Settings(UISettings, ServeSettings, TrainingSettings, SelectionSettings, CoreSettings):
    model_config = SettingsConfigDict(
        env_prefix="EMPATHY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )


def get_settings(**overrides: Any) -> Settings:
    """Build the settings: defaults < `.env` < environment < explicit overrides (CLI flags).

    Overrides whose value is None are ignored, so argparse defaults of None mean "use the setting".
    """
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
