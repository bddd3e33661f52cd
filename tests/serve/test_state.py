"""What the gateway computes once and keeps: the metric label sets (made again when the experiments are
replaced) and the merged sampling defaults (kept only for the models that have their own)."""

from __future__ import annotations

from pathlib import Path

from serve.app import create_app
from serve.experiments import Arm, Experiment
from serve.settings import SamplingDefaults
from serve.state import Gateway
from tests.serve.conftest import make_settings


def _gateway(tmp_path: Path, **overrides: object) -> Gateway:
    (tmp_path / "data").mkdir()
    settings = make_settings(tmp_path, tmp_path / "data", upstreams=["http://127.0.0.1:9"], **overrides)
    gw: Gateway = create_app(settings).state.gateway
    return gw


def test_labels_follow_the_experiments_when_they_are_replaced(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    assert (gw.model_label("base"), gw.model_label("tone"), gw.arm_label("warm")) == \
        ("base", "other", "other")
    gw.experiments = {"tone": Experiment(name="tone", arms=[Arm(name="warm", model="base")])}
    assert (gw.model_label("tone"), gw.arm_label("warm"), gw.arm_label("cold")) == ("tone", "warm", "other")
    gw.experiments = {}
    assert (gw.model_label("tone"), gw.arm_label("warm")) == ("other", "other")


def test_sampling_defaults_are_merged_once_for_models_with_their_own(tmp_path: Path) -> None:
    gw = _gateway(tmp_path, model_sampling={"base": {"temperature": 0.2}})
    base = gw.sampling("base")
    assert base is gw.sampling("base")
    assert base.given["temperature"] == 0.2
    assert base.given["max_tokens"] == gw.settings.sampling_defaults.max_tokens
    assert gw.sampling("empathy") is gw.settings.sampling_defaults
    for i in range(100):  # any other name gets the gateway's defaults and is not kept
        assert gw.sampling(f"model-{i}") is gw.settings.sampling_defaults
    assert list(gw._sampling) == ["base"]
    assert SamplingDefaults(temperature=None).given.keys() == {"top_p", "repetition_penalty", "max_tokens"}
