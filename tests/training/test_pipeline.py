"""Pipeline bookkeeping: a step runs once, is skipped while its inputs hold, reruns when they change."""

from __future__ import annotations

from pathlib import Path

from training.pipeline import PROFILES, fingerprint, run_step, summary_table


def test_steps_skip_when_inputs_are_unchanged(tmp_path: Path) -> None:
    source, output = tmp_path / "input.txt", tmp_path / "out" / "result.txt"
    source.write_text("v1")
    runs: list[str] = []

    def action() -> None:
        runs.append(source.read_text())
        output.parent.mkdir(exist_ok=True)
        output.write_text(source.read_text().upper())

    def step() -> str:
        return run_step(tmp_path, "demo", fingerprint({"limit": 3}, [source]), [output], action).status

    assert step() == "ran"
    assert step() == "skipped"
    source.write_text("v2")
    assert step() == "ran"
    output.unlink()
    assert step() == "ran"
    assert runs == ["v1", "v2", "v2"]
    assert run_step(tmp_path, "demo", fingerprint({"limit": 3}, [source]), [output], action,
                    force=True).status == "ran"


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
    from training.pipeline import StepResult

    table = summary_table([StepResult("select", "ran", 12.34), StepResult("blends", "skipped", 0.0)])
    assert "| select | ran | 12.3 |" in table and "| total | | 12.3 |" in table
