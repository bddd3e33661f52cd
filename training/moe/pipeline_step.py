"""The `moe` step of `empathy pipeline` (after the experts; independent of blends and router).

`training/pipeline.py` appends `moe_step(settings, limit, max_steps)` to its plan; suggested per profile:
quick (128, 16), smoke (16, 2), paper (None, None) = the full data for one epoch, as the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

PROFILE_LIMITS: dict[str, tuple[int | None, int | None]] = {
    "quick": (128, 16), "smoke": (16, 2), "paper": (None, None),
}


def moe_step(settings: Any, limit: int | None, max_steps: int | None
             ) -> tuple[str, dict[str, Any], list[Path], list[Path], Callable[[], None]]:
    """(name, params, input files, outputs, action), the tuple `pipeline.plan` builds for every step."""
    d = Path(settings.data_dir)

    def action() -> None:
        from empathy.errors import EmpathyError
        from training.commands import moe

        argv = ["--data-dir", str(d)]
        argv += ["--limit", str(limit)] if limit else []
        argv += ["--max-steps", str(max_steps)] if max_steps else []
        if moe.main(argv) != 0:
            raise EmpathyError("pipeline step moe failed; see the messages above.")

    params = {"limit": limit, "max_steps": max_steps, "routed": settings.moe_routed,
              "lr": settings.moe_learning_rate, "epochs": settings.moe_epochs,
              "batch_size": settings.moe_batch_size, "max_length": settings.max_length, "seed": settings.seed}
    inputs = [d / "experts" / "sensibility", d / "experts" / "rationality", d / "subsets" / "full.jsonl"]
    return "moe", params, inputs, [d / "moe" / "config.json"], action
