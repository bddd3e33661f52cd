"""The vLLM child must not outlive a gateway that is killed outright (SIGKILL runs none of our code), and it
runs nicer than the gateway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

SCRIPT = """
import subprocess, sys, time
from empathy.engine import child_preexec
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                         preexec_fn=child_preexec(int(sys.argv[1])))
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for init to reap it is gone too
        return stat.read().split(")")[-1].split()[0] != "Z"


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().split(")")[-1].split()[16])


def test_child_started_like_the_engine_dies_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT, "7"], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    assert niceness(child) == niceness(parent.pid) + 7
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)
