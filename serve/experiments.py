"""Experiments: named sets of arms with traffic weights, and stable assignment of users to arms."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from empathy.errors import ConfigError


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128, description="A gateway model name or `blend:<weight>`.")
    weight: float = Field(default=1.0, gt=0, le=1e6, allow_inf_nan=False,
                          description="Relative share of the experiment's traffic (finite, > 0).")


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    active: bool = True
    description: str = Field(default="", max_length=2000)
    arms: list[Arm] = Field(min_length=1, max_length=32)
    created: float | None = Field(
        default=None, allow_inf_nan=False,
        description="Set by the gateway when the experiment is created (Unix time; any value sent is "
        "ignored): its results count only traffic from then on.",
    )

    @field_validator("arms")
    @classmethod
    def _unique_arm_names(cls, arms: list[Arm]) -> list[Arm]:
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique; got {names}")
        return arms

    @model_validator(mode="after")
    def _not_a_model_name(self) -> Experiment:
        if self.name.startswith("empathy") or self.name == "base":
            raise ValueError(f"experiment name {self.name!r} clashes with a model name; choose another")
        return self


def unit_hash(*parts: str) -> float:
    """A stable number in [0, 1) from the parts (same input, same number, on every machine and run)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment: Experiment, subject: str) -> Arm:
    """The arm of `subject` (a user or session id): a weighted choice by a stable hash, so a user keeps
    their arm; hashing with the experiment's name keeps assignments of different experiments independent."""
    point = unit_hash(experiment.name, subject) * sum(a.weight for a in experiment.arms)
    for arm in experiment.arms:
        point -= arm.weight
        if point < 0:
            return arm
    return experiment.arms[-1]


def parse_experiments(data: object, where: str) -> list[Experiment]:
    rows = data.get("experiments", []) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ConfigError(f"{where}: expected a list `experiments` of "
                          "{name, arms: [{name, model, weight}]}.")
    try:
        return [Experiment.model_validate(row) for row in rows]
    except ValidationError as exc:
        raise ConfigError(f"{where}: invalid experiment: {exc}") from exc


def load_experiments_file(path: Path) -> list[Experiment]:
    """Experiments from a TOML (`[[experiments]]` tables) or YAML (`experiments:` list) file."""
    if not path.is_file():
        raise ConfigError(f"experiments file {path} does not exist; fix EMPATHY_EXPERIMENTS_FILE.")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data: object = tomllib.loads(text)
        elif path.suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot parse ({exc}); use .toml, .yaml or .json.") from exc
    return parse_experiments(data, str(path))


def check_arms(experiment: Experiment, models: Sequence[str], grid: Sequence[float]) -> None:
    """Every arm must name a served model or a served blend weight."""
    for arm in experiment.arms:
        if arm.model.startswith("blend:"):
            try:
                weight = float(arm.model.removeprefix("blend:"))
            except ValueError:
                weight = -1.0
            if not any(abs(weight - w) <= 1e-3 for w in grid):
                raise ConfigError(f"experiment {experiment.name}, arm {arm.name}: {arm.model} is not "
                                  f"a served blend (grid {list(grid)}).")
        elif arm.model not in models:
            raise ConfigError(f"experiment {experiment.name}, arm {arm.name}: unknown model {arm.model!r}; "
                              f"use one of {list(models)} or blend:<weight>.")
