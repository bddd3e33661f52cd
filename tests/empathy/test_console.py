"""The pipeline console: progress parsed from tqdm bars, and a step's output sent to the log file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from empathy.console import StepConsole, latest_progress, status_line

BARS = ("Tokenizing:  10%|█         | 1/10 [00:01<00:09, 1.0it/s]\r"
        "NLL (transformers):  42%|████▏     | 105/250 [01:23<02:01,  1.2sample/s]\r"
        "NLL (transformers):  43%|████▎     | 107/250 [01:24<01:59,  1.2sample/s]")


def test_latest_progress_takes_the_newest_bar() -> None:
    progress = latest_progress("log line\n" + BARS)
    assert progress is not None
    assert (progress.desc, progress.percent, progress.done, progress.total, progress.remaining) == \
        ("NLL (transformers)", 43, 107, 250, "01:59")
    assert latest_progress("no bar here") is None


def test_status_line_shows_progress_or_estimate() -> None:
    line = status_line("[7/9] router", 84.0, latest_progress(BARS), None)
    assert line == "[7/9] router  1:24  NLL (transformers) 43% (107/250) ETA 01:59"
    assert "ETA ~1:00 (last run 2:00)" in status_line("[1/9] select", 60.0, None, 120.0)


def test_step_output_goes_to_the_log(tmp_path: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "logs" / "pipeline.log"
    console = StepConsole(log, interval=0.05)
    with console.running(1, 2, "select", None):
        print("a step's own output", flush=True)
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child stderr\\n')"], check=True)
    out = capfd.readouterr().out
    assert "[1/2] select  done in" in out and "a step's own output" not in out
    assert "a step's own output" in log.read_text() and "child stderr" in log.read_text()
