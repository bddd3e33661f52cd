"""The `moe` step of `empathy pipeline`: the experts' token-level MoE (its gates train after the experts).

Samples and optimizer steps per profile: a few in `smoke` and `quick` (a wiring check), the full expert's
2,000 samples for one epoch in `standard` (its seeded pick: the gates never see the router's samples, so
the held-out comparison of `empathy train moe --evaluate` stays clean), the full data for one epoch in
`paper`, as the paper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from empathy.layout import Layout

if TYPE_CHECKING:
    from empathy.settings import Settings
    from training.pipeline import Step

PROFILE_LIMITS: dict[str, tuple[int | None, int | None]] = {
    "smoke": (16, 2), "quick": (128, 16), "standard": (2000, None), "paper": (None, None),
}


def moe_step(settings: Settings, profile: str) -> Step:
    """The step that trains the gates (skipped while the experts, the data and the settings are unchanged;
    an artifact already trained for the same job, e.g. by `empathy train moe`, is kept). The job is built
    when the step runs: the base model may not be prepared when the plan is made."""
    from training.pipeline import Step

    limit, max_steps = PROFILE_LIMITS[profile]
    settings = settings.model_copy(update={"moe_limit": limit})
    layout = Layout(settings.data_dir)

    def action() -> None:
        from training.commands.moe import job_from_settings
        from training.moe.train import is_up_to_date, train_moe

        job = job_from_settings(settings, max_steps=max_steps)
        if not is_up_to_date(job):
            train_moe(job)

    params = {"base_model": settings.base_model, "routed": settings.moe_routed, "limit": limit,
              "max_steps": max_steps, "lr": settings.moe_learning_rate, "epochs": settings.moe_epochs,
              "batch_size": settings.moe_batch_size, "max_length": settings.max_length, "seed": settings.seed,
              "bf16": settings.train_bf16}
    inputs = [layout.expert("sensibility"), layout.expert("rationality"), layout.subset("full")]
    return Step("moe", params, inputs, [layout.moe / "config.json"], action)
