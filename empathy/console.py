"""A readable console for long multi-step jobs: one line per step with its progress and ETA.

While a step runs, everything it writes to stdout/stderr (logs, progress bars, child processes such as a vLLM
engine) goes to a log file, at the file-descriptor level; the console line is drawn from the newest progress
bar in that file (tqdm's `n/total [elapsed<remaining]`). `verbose` leaves the output where it is.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TQDM = re.compile(r"(?:([^\r\n|]{0,60}?):\s*)?(\d{1,3})%\|[^|\r\n]*\|\s*(\d+)/(\d+)\s*\[([0-9:]+)<([0-9:?]+)")
TAIL_BYTES = 8192


@dataclass(frozen=True)
class Progress:
    """The newest progress bar of a step: what it counts, how far, and its own ETA."""

    desc: str
    percent: int
    done: int
    total: int
    remaining: str


def latest_progress(text: str) -> Progress | None:
    """The last tqdm bar in `text` (bars redraw with carriage returns), or None."""
    last = None
    for match in TQDM.finditer(text):
        last = match
    if last is None:
        return None
    desc, pct, done, total, _elapsed, remaining = last.groups()
    return Progress((desc or "").strip(), int(pct), int(done), int(total), remaining)


def clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def status_line(head: str, elapsed: float, progress: Progress | None, estimate: float | None) -> str:
    """`[3/9] expert-sensibility  1:23  42% (105/250) ETA 2:01` (the estimate: the last run's time)."""
    parts = [head, clock(elapsed)]
    if progress is not None:
        what = f"{progress.desc} " if progress.desc else ""
        parts.append(f"{what}{progress.percent}% ({progress.done}/{progress.total}) ETA {progress.remaining}")
    elif estimate:
        parts.append(f"ETA ~{clock(estimate - elapsed)} (last run {clock(estimate)})")
    return "  ".join(parts)


class StepConsole:
    """Prints one line per step to the terminal; `running` sends the step's own output to `log_path`."""

    def __init__(self, log_path: Path, verbose: bool = False, interval: float = 2.0) -> None:
        self.log_path = log_path
        self.verbose = verbose
        self.interval = interval
        self.tty = sys.stdout.isatty()

    def skipped(self, number: int, total: int, name: str) -> None:
        print(f"[{number}/{total}] {name}  up to date, skipped", flush=True)

    @contextmanager
    def running(self, number: int, total: int, name: str, estimate: float | None) -> Iterator[None]:
        head = f"[{number}/{total}] {name}"
        started = time.monotonic()
        if self.verbose:
            print(f"{head}  running", flush=True)
            yield
            print(f"{head}  done in {clock(time.monotonic() - started)}", flush=True)
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._redirected() as terminal:
            stop = threading.Event()
            ticker = threading.Thread(target=self._tick, args=(terminal, head, started, estimate, stop),
                                      daemon=True)
            ticker.start()
            try:
                yield
            except BaseException:
                stop.set()
                ticker.join()
                self._write(terminal, f"{head}  FAILED after {clock(time.monotonic() - started)}; "
                            f"its output is in {self.log_path}\n")
                raise
            stop.set()
            ticker.join()
            self._write(terminal, f"{head}  done in {clock(time.monotonic() - started)}\n")

    @contextmanager
    def _redirected(self) -> Iterator[int]:
        """fds 1 and 2 appended to the log file; yields a duplicate of the terminal's stdout."""
        sys.stdout.flush()
        sys.stderr.flush()
        terminal, saved_err = os.dup(1), os.dup(2)
        saved = sys.stdout, sys.stderr
        with self.log_path.open("a", encoding="utf-8", buffering=1) as log_file:
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
            sys.stdout = sys.stderr = log_file  # Python-level writers too (where sys.stdout is not fd 1)
            try:
                yield terminal
            finally:
                log_file.flush()
                sys.stdout, sys.stderr = saved
                os.dup2(terminal, 1)
                os.dup2(saved_err, 2)
                os.close(saved_err)
                os.close(terminal)

    def _tick(self, terminal: int, head: str, started: float, estimate: float | None,
              stop: threading.Event) -> None:
        last_print = 0.0
        while not stop.wait(self.interval):
            line = status_line(head, time.monotonic() - started, self._progress(), estimate)
            if self.tty:
                self._write(terminal, f"\r\x1b[2K{line}")
            elif time.monotonic() - last_print >= 60:
                self._write(terminal, line + "\n")
                last_print = time.monotonic()
        if self.tty:
            self._write(terminal, "\r\x1b[2K")

    def _progress(self) -> Progress | None:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(max(handle.seek(0, os.SEEK_END) - TAIL_BYTES, 0))
                return latest_progress(handle.read().decode("utf-8", "replace"))
        except OSError:
            return None

    @staticmethod
    def _write(fd: int, text: str) -> None:
        os.write(fd, text.encode("utf-8", "replace"))
