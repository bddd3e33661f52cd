"""`empathy pipeline --profile quick|standard|smoke|paper`: base model -> judge -> select -> experts -> blends
-> router -> eval -> moe.

Every step records a fingerprint of its inputs (settings, flags and the content of the files it reads) in
`<data_dir>/pipeline/<step>.json`; a step whose fingerprint and outputs are unchanged is skipped, so running
the pipeline again after a stop (or after changing one thing) redoes only what is out of date. The console
shows one line per step (progress and ETA); everything the steps print goes to `<data_dir>/logs/pipeline.log`
(`--verbose` shows it instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empathy.layout import EXPERTS, Layout
from empathy.router import ARTIFACT_JSON

if TYPE_CHECKING:
    from empathy.settings import Settings

log = logging.getLogger("empathy.pipeline")
SCORES_SPLIT = "valid"  # the paper released its judge's scores for the validation split only
BIG_FILE = 64 * 2**20  # larger files are fingerprinted by size and mtime instead of content
EVAL_MODELS = ("base", "full", "sensibility", "rationality", "blend:0.5", "routed")


@dataclass(frozen=True)
class Profile:
    name: str
    select_split: str
    select_limit: int | None  # samples scored by a judge (imported scores cover their split anyway)
    expert_limit: int | None  # samples per expert (the same for every subset: comparable experts)
    expert_max_steps: int | None
    router_split: str
    router_limit: int | None
    train: dict[str, Any] = field(default_factory=dict)  # training settings (experts, router) it overrides
    eval_limit: int | None = None  # test samples of the eval step; None: no eval step
    experts: tuple[str, ...] = EXPERTS
    judge: dict[str, Any] = field(default_factory=dict)  # judge settings it overrides unless set explicitly


# The judge that fits in minutes (`distilled:paper-stacked`, the default until session 9) for the profiles
# that must be fast; the default (`distilled:paper-xenc-stacked`) fine-tunes MiniLM four times first (about an
# hour here, once per data dir).
FAST_JUDGE = {"distill_kind": "stacked", "distill_name": "paper-stacked"}

PROFILES = {
    # About 20 minutes on 2 CPU cores: small experts, a few hundred router samples, the fast judge.
    "quick": Profile("quick", "train", 2000, 128, 16, "train", 200, judge=FAST_JUDGE),
    # Wiring check in minutes on any base model (use a tiny one): a few optimizer steps per expert, a
    # reply-kind stage on 300 scored samples (an encoder pass each; the default 20,000 took most of its time).
    "smoke": Profile("smoke", "train", 200, 16, 2, "train", 40, train={"router_kind_limit": 300},
                     judge=FAST_JUDGE),
    # The release: the whole train split judged, experts that differ (one epoch of 2,000 samples each, LoRA on
    # the last 12 layers, lr 2e-4), router targets on 1,500 samples, the eval table on 100 test samples.
    "standard": Profile("standard", "train", None, 2000, None, "train", 1500,
                        train={"lora_layers": 12, "learning_rate": 2e-4}, eval_limit=100),
    "paper": Profile("paper", "train", None, None, None, "train", 3000, eval_limit=300),
}


@dataclass(frozen=True)
class Step:
    """One pipeline step: it runs `action` unless `params` and the content of `inputs` are unchanged since
    its last run and every one of `outputs` exists."""

    name: str
    params: dict[str, Any]
    inputs: list[Path]
    outputs: list[Path]
    action: Callable[[], Any]


@dataclass
class StepResult:
    name: str
    status: str  # ran | skipped
    seconds: float


def file_fingerprint(path: Path) -> str:
    if not path.exists():
        return "missing"
    if path.is_dir():
        return hashlib.sha256("".join(file_fingerprint(p) for p in sorted(path.rglob("*"))
                                      if p.is_file()).encode()).hexdigest()
    stat = path.stat()
    if stat.st_size > BIG_FILE:
        return f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(params: dict[str, Any], files: Sequence[Path]) -> str:
    body = json.dumps({"params": params, "files": [file_fingerprint(f) for f in files]}, sort_keys=True,
                      default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def is_current(data_dir: Path, step: Step, key: str) -> bool:
    record = Layout(data_dir).pipeline_record(step.name)
    return (record.is_file() and all(p.exists() for p in step.outputs)
            and json.loads(record.read_text()).get("fingerprint") == key)


def last_seconds(data_dir: Path, name: str) -> float | None:
    """How long the step took the last time it ran here (the console's ETA), if it ever did."""
    record = Layout(data_dir).pipeline_record(name)
    if not record.is_file():
        return None
    return json.loads(record.read_text()).get("seconds")


def write_record(data_dir: Path, name: str, key: str, seconds: float) -> None:
    record = Layout(data_dir).pipeline_record(name)
    record.parent.mkdir(parents=True, exist_ok=True)
    from training.release import default_release_dir, git_commit

    record.write_text(json.dumps({"fingerprint": key, "seconds": round(seconds, 1),
                                  "commit": git_commit(default_release_dir().parent),
                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))


def profile_settings(settings: Settings, profile: Profile) -> Settings:
    """The settings with the profile's training overrides (a profile's experts are trained its way)."""
    return settings.model_copy(update=profile.train) if profile.train else settings


def judge_settings(settings: Settings, profile: Profile) -> Settings:
    """The settings with the profile's judge (quick and smoke: the fast one), unless EMPATHY_DISTILL_* or an
    override chose the judge explicitly."""
    update = {k: v for k, v in profile.judge.items() if k not in settings.model_fields_set}
    return settings.model_copy(update=update) if update else settings


def train_params(settings: Settings) -> dict[str, Any]:
    keys = ("base_model", "lora_r", "lora_alpha", "lora_dropout", "learning_rate", "epochs", "max_length",
            "seed", "lora_layers", "train_bf16", "train_padding_free", "batch_size", "grad_accum",
            "lora_targets")
    return {k: getattr(settings, k) for k in keys}


def selection_split(profile: Profile, scores: Path | None) -> str:
    """Released scores exist for one split only; a judge scores the profile's split."""
    return SCORES_SPLIT if scores is not None else profile.select_split


def select_action(settings: Settings, profile: Profile, judge: str | None, scores: Path | None
                  ) -> Callable[[], None]:
    """Score (or import scores) and write the subsets, through selection's own services."""
    def action() -> None:
        from selection.commands.split import manifest_text, write_split

        spec = select_judge(settings, judge, scores, profile)
        print(manifest_text(*write_split(settings, selection_split(profile, scores), spec)))

    return action


def default_judge(settings: Settings, judge: str | None) -> str:
    if judge is not None:
        return judge
    from selection.distill import ensure_default_judge

    return ensure_default_judge(settings)


def judge_name(settings: Settings, judge: str | None, scores: Path | None) -> str | None:
    """What the select and eval steps' fingerprints record of the judge: the default one by name, so that
    changing the default judge selects and evaluates again."""
    if scores is not None:
        return None
    return judge or f"distilled:{settings.distill_name}"


def select_judge(settings: Settings, judge: str | None, scores: Path | None, profile: Profile) -> str:
    """Store scores for the selection split; returns the judge id whose scores `select split` uses."""
    if scores is not None:
        from selection.commands.import_scores import import_scores, summary_text
        from selection.importers import JUDGE_IDS

        print(summary_text(import_scores(settings, scores, SCORES_SPLIT)))
        return JUDGE_IDS["efficient-empathy"][0]
    from selection.commands.score import score_split
    from selection.commands.score import summary_text as score_text

    spec = default_judge(settings, judge)
    print(score_text(score_split(settings, profile.select_split, spec, profile.select_limit or None)))
    return spec


def judge_step(settings: Settings, judge: str | None, scores: Path | None) -> list[Step]:
    """Fitting the default distilled judge, once, as a step of its own (timed in the summary): only when
    selection uses it (no --judge, no --scores)."""
    if judge is not None or scores is not None:
        return []
    from selection.distill.artifact import META_FILE, artifact_dir

    params = {k: getattr(settings, k) for k in ("distill_name", "distill_kind", "distill_epochs",
                                                "distill_max_len", "distill_loss", "distill_seed",
                                                "distill_holdout", "distill_discard_calibration",
                                                "distill_base_name")}
    inputs = [Path(settings.distill_labels_path)]
    if settings.distill_kind != "cross-encoder":  # every other kind also learns the train keep/discard labels
        inputs.append(Path(settings.distill_discard_path))
    output = artifact_dir(settings.data_dir, settings.distill_name) / META_FILE
    return [Step("judge", params, inputs, [output], lambda: default_judge(settings, None))]


def expert_action(settings: Settings, profile: Profile, subset: str) -> Callable[[], None]:
    def action() -> None:
        from training.commands.expert import job_from_settings
        from training.experts import train_expert
        from training.release import SOURCE_MARK

        layout = Layout(settings.data_dir)
        (layout.experts / SOURCE_MARK).unlink(missing_ok=True)  # trained here: local experts come first
        job = job_from_settings(settings, subset, layout.subset(subset), layout.expert(subset),
                                limit=profile.expert_limit, max_steps=profile.expert_max_steps)
        meta = train_expert(job)
        log.info("expert %s: %d samples, %d steps, final loss %.3f", subset, meta["samples"], meta["steps"],
                 meta["final_loss"])

    return action


def blends_action(settings: Settings) -> Callable[[], None]:
    def action() -> None:
        from empathy.base_model import base_model_path
        from training.blend_files import build_blends
        from training.blends import validate_grid

        layout = Layout(settings.data_dir)
        build_blends(sens_dir=layout.expert("sensibility"), rat_dir=layout.expert("rationality"),
                     blends_dir=layout.blends, grid=validate_grid(settings.blend_grid),
                     base_model=base_model_path(settings))

    return action


def router_action(settings: Settings, profile: Profile, url: str | None) -> Callable[[], None]:
    def action() -> None:
        from training.commands.router import format_metrics
        from training.router.grid import read_blend_grid
        from training.router.train import train_router

        adapters, _ = read_blend_grid(settings.data_dir)
        meta = train_router(settings, adapters, profile.router_split, profile.router_limit,
                            backend=settings.router_nll_backend, url=url)
        print(format_metrics(meta["metrics"]))

    return action


def eval_action(settings: Settings, profile: Profile, judge: str | None, url: str | None
                ) -> Callable[[], None]:
    def action() -> None:
        from training.evaluation.run import run_evals

        for path in run_evals(settings, EVAL_MODELS, "test", profile.eval_limit, url,
                              default_judge(settings, judge)):
            print(f"wrote {path}")

    return action


def eval_step(settings: Settings, profile: Profile, judge: str | None, url: str | None) -> list[Step]:
    if profile.eval_limit is None:
        return []
    from training.evaluation.run import run_name

    layout = Layout(settings.data_dir)
    outputs = [layout.eval / f"{run_name(m, 'test', profile.eval_limit)}.json" for m in EVAL_MODELS]
    inputs = [layout.expert(e) for e in EXPERTS] + [layout.router / ARTIFACT_JSON]
    return [Step("eval", {"models": EVAL_MODELS, "limit": profile.eval_limit,
                          "judge": judge_name(settings, judge, None),
                          "max_tokens": settings.eval_max_tokens}, inputs, outputs,
                 eval_action(settings, profile, judge, url))]


def plan(settings: Settings, profile: Profile, judge: str | None, scores: Path | None, url: str | None
         ) -> list[Step]:
    """The steps in order; the inputs of a step include upstream outputs."""
    from training.base_model import prepare_default_model
    from training.settings import DEFAULT_BASE_MODEL

    settings = judge_settings(settings, profile)
    d = settings.data_dir
    layout = Layout(d)
    train = profile_settings(settings, profile)
    select_split = selection_split(profile, scores)
    default = settings.base_model == DEFAULT_BASE_MODEL  # anything else is used as given
    fitting = judge_step(settings, judge, scores)
    steps = [Step("base-model", {"base_model": settings.base_model}, [], [layout.models] if default else [],
                  lambda: prepare_default_model(d) if default else None),
             *fitting,
             Step("select", {"judge": judge_name(settings, judge, scores), "split": select_split,
                             "limit": profile.select_limit,
                             "s": settings.sensibility_threshold, "r": settings.rationality_threshold},
                  [Path(settings.corpus_path) / f"{select_split}.csv", *([scores] if scores else []),
                   *[out for step in fitting for out in step.outputs]],  # a re-fitted judge selects again
                  [layout.subsets_manifest], select_action(settings, profile, judge, scores))]
    steps += [Step(f"expert-{subset}", {**train_params(train), "limit": profile.expert_limit,
                                        "max_steps": profile.expert_max_steps},
                   [layout.subset(subset)], [layout.expert(subset) / "adapter_config.json"],
                   expert_action(train, profile, subset)) for subset in profile.experts]
    steps.append(Step("blends", {"grid": settings.blend_grid},
                      [layout.expert("sensibility"), layout.expert("rationality")],
                      [layout.blends_index], blends_action(settings)))
    router_params = {"split": profile.router_split, "limit": profile.router_limit,
                     "t": train.router_temperature, "l2": train.router_l2,
                     "features": train.router_features, "kind_limit": train.router_kind_limit}
    steps.append(Step("router", router_params, [layout.blends_index, layout.subset("full")],
                      [layout.router / ARTIFACT_JSON],
                      router_action(train, profile, url)))
    from training.moe.pipeline_step import moe_step

    # The eval table comes before the MoE's gates: the release needs the first, not the second (the moe row
    # comes from `empathy eval --model moe`).
    return [*steps, *eval_step(settings, profile, judge, url), moe_step(settings, profile.name)]


def summary_table(results: Sequence[StepResult]) -> str:
    lines = ["| step | status | wall time (s) |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} |" for r in results]
    lines.append(f"| total | | {sum(r.seconds for r in results):.1f} |")
    return "\n".join(lines)


def run_steps(d: Path, steps: Sequence[Step], force: Sequence[str] = (), verbose: bool = False
              ) -> list[StepResult]:
    """Run each out-of-date step of `steps` (data dir `d`) under the console: one line per step, the
    step's own output in `<d>/logs/pipeline.log` unless `verbose`."""
    from empathy.console import StepConsole

    console = StepConsole(Layout(d).log("pipeline"), verbose)
    results = []
    for number, step in enumerate(steps, start=1):
        # Inputs are fingerprinted when the step is reached: upstream steps have written them by then.
        key = fingerprint({"step": step.name, **step.params}, step.inputs)
        if not ("all" in force or step.name in force) and is_current(d, step, key):
            console.skipped(number, len(steps), step.name)
            results.append(StepResult(step.name, "skipped", 0.0))
            continue
        started = time.monotonic()
        with console.running(number, len(steps), step.name, last_seconds(d, step.name)):
            step.action()
        seconds = time.monotonic() - started
        write_record(d, step.name, key, seconds)
        results.append(StepResult(step.name, "ran", seconds))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--judge", help="judge spec for selection (default: the distilled default judge)")
    parser.add_argument("--scores", type=Path,
                        help="select with released scores instead of a judge (the paper's val_results.json)")
    parser.add_argument("--url", help="a running vLLM server with the blends for the router and eval steps")
    parser.add_argument("--force", nargs="*", default=[], help="steps to run even if up to date ('all')")
    parser.add_argument("--verbose", action="store_true",
                        help="show every step's logs and progress bars instead of one line per step")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empathy.logs import setup_logging
    from empathy.settings import get_settings

    settings = get_settings(data_dir=args.data_dir)
    setup_logging(settings.log_level)
    profile = PROFILES[args.profile]
    steps = plan(settings, profile, args.judge, args.scores, args.url)
    results = run_steps(settings.data_dir, steps, args.force, args.verbose)
    print(summary_table(results), flush=True)
    return 0
