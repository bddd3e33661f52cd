"""Pipeline bookkeeping: a step runs once, is skipped while its inputs hold, reruns when they change."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.pipeline import PROFILES, Step, fingerprint, run_steps, summary_table


def test_steps_skip_when_inputs_are_unchanged(tmp_path: Path) -> None:
    source, output = tmp_path / "input.txt", tmp_path / "out" / "result.txt"
    source.write_text("v1")
    runs: list[str] = []

    def action() -> None:
        runs.append(source.read_text())
        output.parent.mkdir(exist_ok=True)
        output.write_text(source.read_text().upper())

    def step(force: tuple[str, ...] = ()) -> str:
        demo = Step("demo", {"limit": 3}, [source], [output], action)
        return run_steps(tmp_path, [demo], force)[0].status

    assert step() == "ran"
    assert step() == "skipped"
    source.write_text("v2")
    assert step() == "ran"
    output.unlink()
    assert step() == "ran"
    assert runs == ["v1", "v2", "v2"]
    assert step(force=("demo",)) == "ran"
    assert (tmp_path / "logs" / "pipeline.log").is_file()  # the step's output went to the log


def test_fingerprint_depends_on_params_and_content(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_text("x")
    base = fingerprint({"n": 1}, [path])
    assert fingerprint({"n": 2}, [path]) != base
    path.write_text("y")
    assert fingerprint({"n": 1}, [path]) != base
    assert fingerprint({"n": 1}, [tmp_path / "missing"]) != base


def test_profiles_and_summary() -> None:
    assert PROFILES["quick"].expert_limit and PROFILES["paper"].expert_limit is None
    standard = PROFILES["standard"]  # the release's profile: issue 11's minimums
    assert standard.expert_limit is not None and standard.expert_limit >= 2000
    assert standard.router_limit is not None and standard.router_limit >= 1500
    assert standard.expert_max_steps is None and standard.eval_limit
    from training.pipeline import StepResult

    table = summary_table([StepResult("select", "ran", 12.34), StepResult("blends", "skipped", 0.0)])
    assert "| select | ran | 12.3 |" in table and "| total | | 12.3 |" in table


def test_select_step_imports_scores_and_writes_the_subsets(tmp_path: Path, corpus_dir: Path,
                                                           paper_scores_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The select step calls selection's services (no argv round trip) and prints what their commands do."""
    import json

    from empathy.settings import get_settings
    from training.pipeline import plan

    settings = get_settings(data_dir=str(tmp_path), corpus_path=str(corpus_dir))
    steps = {s.name: s for s in plan(settings, PROFILES["quick"], None, paper_scores_path, None)}
    steps["select"].action()
    out = capsys.readouterr().out
    assert "as judge efficient-empathy-chatgpt" in out and f"{tmp_path / 'subsets'}: sensibility" in out
    manifest = json.loads((tmp_path / "subsets" / "manifest.json").read_text())
    assert manifest["judge"] == "efficient-empathy-chatgpt" and manifest["split"] == "valid"
    assert steps["select"].outputs == [tmp_path / "subsets" / "manifest.json"]


def test_a_profile_overrides_the_router_settings_too(tmp_path: Path, corpus_dir: Path,
                                                     paper_scores_path: Path) -> None:
    """The smoke profile caps the router's reply-kind stage (one encoder pass per scored sample), and the
    router step's fingerprint says so; the standard profile keeps the settings' value."""
    from empathy.settings import get_settings
    from training.pipeline import plan

    settings = get_settings(data_dir=str(tmp_path), corpus_path=str(corpus_dir))
    limits = {name: {s.name: s for s in plan(settings, PROFILES[name], None, paper_scores_path, None)}
              ["router"].params["kind_limit"] for name in ("smoke", "standard")}
    assert limits == {"smoke": PROFILES["smoke"].train["router_kind_limit"],
                      "standard": settings.router_kind_limit}
    assert limits["smoke"] < settings.router_kind_limit


def test_the_fast_profiles_use_the_fast_judge_unless_one_is_chosen(tmp_path: Path, corpus_dir: Path) -> None:
    """quick and smoke fit `paper-stacked` in minutes; standard fits the default (`paper-xenc-stacked`); a
    judge chosen in the settings (EMPATHY_DISTILL_*) wins over the profile's."""
    from empathy.settings import get_settings
    from training.pipeline import plan

    def judge_params(name: str, **overrides: str) -> tuple[str, str]:
        settings = get_settings(data_dir=str(tmp_path), corpus_path=str(corpus_dir), **overrides)
        params = {s.name: s for s in plan(settings, PROFILES[name], None, None, None)}["judge"].params
        return params["distill_kind"], params["distill_name"]

    assert judge_params("quick") == judge_params("smoke") == ("stacked", "paper-stacked")
    assert judge_params("standard") == ("xenc-stacked", "paper-xenc-stacked")
    assert judge_params("quick", distill_kind="lexical", distill_name="mine") == ("lexical", "mine")


def test_changing_the_default_judge_selects_and_evaluates_again(tmp_path: Path, corpus_dir: Path) -> None:
    """The select and eval steps' fingerprints name the default judge, and select reads the fitted judge."""
    from empathy.settings import get_settings
    from selection.distill.artifact import META_FILE, artifact_dir
    from training.pipeline import plan

    def steps(name: str) -> dict[str, Step]:
        settings = get_settings(data_dir=str(tmp_path), corpus_path=str(corpus_dir), distill_name=name)
        return {s.name: s for s in plan(settings, PROFILES["standard"], None, None, None)}

    one, two = steps("one"), steps("two")
    for step in ("select", "eval"):
        assert one[step].params["judge"] == "distilled:one" and two[step].params["judge"] == "distilled:two"
    assert artifact_dir(tmp_path, "one") / META_FILE in one["select"].inputs
