"""Settings: environment variables with the EMPATHY_ prefix, explicit overrides, validation messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from empathy.settings import get_settings


def test_env_then_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMPATHY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EMPATHY_JUDGE_CONCURRENCY", "3")
    settings = get_settings(judge_concurrency=None)  # None means "use the setting"
    assert settings.data_dir == tmp_path
    assert settings.judge_concurrency == 3
    assert get_settings(judge_concurrency=5).judge_concurrency == 5
    assert settings.resolved_store_url() == f"sqlite:///{(tmp_path / 'empathy.db').resolve()}"


def test_blend_grid_outside_unit_interval_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPATHY_BLEND_GRID", "[0, 0.5, 1.5]")
    with pytest.raises(ValidationError, match="EMPATHY_BLEND_GRID"):
        get_settings()


def test_config_command_prints_every_field_documented() -> None:
    result = subprocess.run([sys.executable, "-m", "empathy", "config", "--json"], capture_output=True,
                            text=True, check=True)
    values = json.loads(result.stdout)
    assert "EMPATHY_DATA_DIR" in values and "EMPATHY_BLEND_GRID" in values
    from empathy.settings import Settings

    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undocumented, f"settings without a description: {undocumented}"
