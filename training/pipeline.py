"""`empathy pipeline --profile quick|paper`: base model -> select -> experts -> blends -> router.

Every step records a fingerprint of its inputs (settings, flags and the content of the files it reads) in
`<data_dir>/pipeline/<step>.json`; a step whose fingerprint and outputs are unchanged is skipped, so running
the pipeline again after a stop (or after changing one thing) redoes only what is out of date.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("empathy.pipeline")
SCORES_SPLIT = "valid"  # the paper released its judge's scores for the validation split only
BIG_FILE = 64 * 2**20  # larger files are fingerprinted by size and mtime instead of content


@dataclass(frozen=True)
class Profile:
    name: str
    select_split: str
    select_limit: int | None  # samples scored by a judge (imported scores cover their split anyway)
    expert_limit: int | None
    expert_max_steps: int | None
    experts: tuple[str, ...]
    router_split: str
    router_limit: int | None


PROFILES = {
    # About 20 minutes on 2 CPU cores: small experts, a few hundred router samples.
    "quick": Profile("quick", "train", 2000, 128, 16, ("sensibility", "rationality", "full"), "train", 200),
    # Wiring check in minutes on any base model (use a tiny one): a few optimizer steps per expert.
    "smoke": Profile("smoke", "train", 200, 16, 2, ("sensibility", "rationality", "full"), "train", 40),
    "paper": Profile("paper", "train", None, None, None, ("sensibility", "rationality", "full"), "train",
                     3000),
}


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


def run_step(data_dir: Path, name: str, key: str, outputs: Sequence[Path], action: Callable[[], Any],
             force: bool = False) -> StepResult:
    """Run `action` unless the recorded fingerprint equals `key` and every output exists."""
    record = data_dir / "pipeline" / f"{name}.json"
    if (not force and record.is_file() and all(p.exists() for p in outputs)
            and json.loads(record.read_text()).get("fingerprint") == key):
        log.info("step %s: up to date, skipped", name)
        return StepResult(name, "skipped", 0.0)
    log.info("step %s: running", name)
    started = time.monotonic()
    action()
    seconds = time.monotonic() - started
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"fingerprint": key, "seconds": round(seconds, 1),
                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    return StepResult(name, "ran", seconds)


def _check(code: int, what: str) -> None:
    if code != 0:
        from empathy.errors import EmpathyError

        raise EmpathyError(f"pipeline step {what} failed with exit code {code}; see the messages above.")


def select_action(settings: Any, profile: Profile, judge: str | None, scores: Path | None
                  ) -> Callable[[], None]:
    """Score (or import scores) and write the subsets, through selection's own commands."""
    common = ["--data-dir", str(settings.data_dir), "--corpus", str(settings.corpus_path)]

    def action() -> None:
        from selection.commands import split as split_cmd

        spec = select_judge(settings, judge, scores, profile, common)
        _check(split_cmd.main(["--split", selection_split(profile, scores), "--judge", spec, *common]),
               "select split")

    return action


def selection_split(profile: Profile, scores: Path | None) -> str:
    """Released scores exist for one split only; a judge scores the profile's split."""
    return SCORES_SPLIT if scores is not None else profile.select_split


def select_judge(settings: Any, judge: str | None, scores: Path | None, profile: Profile,
                 common: list[str]) -> str:
    """Store scores for the selection split; returns the judge id whose scores `select split` uses."""
    if scores is not None:
        from selection.commands import import_scores
        from selection.importers import JUDGE_IDS

        _check(import_scores.main([str(scores), "--split", SCORES_SPLIT, *common]), "import scores")
        return JUDGE_IDS["efficient-empathy"][0]
    from selection.commands import score

    if judge is None:
        from selection.distill import ensure_default_judge

        judge = ensure_default_judge(settings)
    limit = ["--limit", str(profile.select_limit)] if profile.select_limit else []
    _check(score.main(["--split", profile.select_split, "--judge", judge, *limit, *common]), "select score")
    return judge


def judge_step(settings: Any, judge: str | None, scores: Path | None
               ) -> list[tuple[str, dict[str, Any], list[Path], list[Path], Callable[[], Any]]]:
    """Fitting the default distilled judge, once, as a step of its own (timed in the summary): only when
    selection uses it (no --judge, no --scores)."""
    if judge is not None or scores is not None:
        return []
    from selection.distill.artifact import META_FILE, artifact_dir

    def action() -> None:
        from selection.distill import ensure_default_judge

        ensure_default_judge(settings)

    params = {k: getattr(settings, k) for k in ("distill_name", "distill_epochs", "distill_max_len",
                                                "distill_loss", "distill_seed", "distill_holdout")}
    return [("judge", params, [Path(settings.distill_labels_path)],
             [artifact_dir(settings.data_dir, settings.distill_name) / META_FILE], action)]


def expert_action(settings: Any, profile: Profile, subset: str) -> Callable[[], None]:
    def action() -> None:
        from training.commands import expert

        argv = ["--subset", subset, "--data-dir", str(settings.data_dir)]
        argv += ["--limit", str(profile.expert_limit)] if profile.expert_limit else []
        argv += ["--max-steps", str(profile.expert_max_steps)] if profile.expert_max_steps else []
        _check(expert.main(argv), f"expert {subset}")

    return action


def blends_action(settings: Any) -> Callable[[], None]:
    def action() -> None:
        from training.commands import blends

        _check(blends.main(["--data-dir", str(settings.data_dir)]), "blends")

    return action


def router_action(settings: Any, profile: Profile, url: str | None) -> Callable[[], None]:
    def action() -> None:
        from training.commands.router import format_metrics
        from training.router.grid import read_blend_grid
        from training.router.train import train_router

        adapters, _ = read_blend_grid(settings.data_dir)
        meta = train_router(settings, adapters, profile.router_split, profile.router_limit,
                            backend=settings.router_nll_backend, url=url)
        print(format_metrics(meta["metrics"]["heldout"]))

    return action


def plan(settings: Any, profile: Profile, judge: str | None, scores: Path | None, url: str | None
         ) -> list[tuple[str, dict[str, Any], list[Path], list[Path], Callable[[], Any]]]:
    """(step, params, input files, outputs, action) in order; inputs of a step include upstream outputs."""
    from training.base_model import prepare_default_model

    d = settings.data_dir
    train = {k: getattr(settings, k) for k in ("base_model", "lora_r", "lora_alpha", "lora_dropout",
                                               "learning_rate", "epochs", "max_length", "seed")}
    select_split = selection_split(profile, scores)
    corpus = [Path(settings.corpus_path) / f"{select_split}.csv"]
    default = settings.base_model == "smollm2-135m-instruct"  # anything else is used as given
    steps = [("base-model", {"base_model": settings.base_model}, [], [d / "models"] if default else [],
              lambda: prepare_default_model(d) if default else None),
             *judge_step(settings, judge, scores),
             ("select", {"judge": judge, "split": select_split, "limit": profile.select_limit,
                         "s": settings.sensibility_threshold,
                         "r": settings.rationality_threshold},
              [*corpus, *([scores] if scores else [])], [d / "subsets" / "manifest.json"],
              select_action(settings, profile, judge, scores))]
    for subset in profile.experts:
        steps.append((f"expert-{subset}", {**train, "limit": profile.expert_limit,
                                            "max_steps": profile.expert_max_steps},
                      [d / "subsets" / f"{subset}.jsonl"], [d / "experts" / subset / "adapter_config.json"],
                      expert_action(settings, profile, subset)))
    steps.append(("blends", {"grid": settings.blend_grid}, [d / "experts" / "sensibility",
                                                            d / "experts" / "rationality"],
                  [d / "blends" / "index.json"], blends_action(settings)))
    steps.append(("router", {"split": profile.router_split, "limit": profile.router_limit,
                             "t": settings.router_temperature, "l2": settings.router_l2},
                  [d / "blends" / "index.json"], [d / "router" / "router.json"],
                  router_action(settings, profile, url)))
    return steps


def summary_table(results: Sequence[StepResult]) -> str:
    lines = ["| step | status | wall time (s) |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} |" for r in results]
    lines.append(f"| total | | {sum(r.seconds for r in results):.1f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy pipeline", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--judge", help="judge spec for selection (default: the distilled default judge)")
    parser.add_argument("--scores", type=Path,
                        help="select with released scores instead of a judge (the paper's val_results.json)")
    parser.add_argument("--url", help="a running vLLM server with the blends for the router step")
    parser.add_argument("--force", nargs="*", default=[], help="steps to run even if up to date ('all')")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from empathy.logs import setup_logging
    from empathy.settings import get_settings

    settings = get_settings(data_dir=args.data_dir)
    setup_logging(settings.log_level)
    profile = PROFILES[args.profile]
    results = []
    steps = plan(settings, profile, args.judge, args.scores, args.url)
    for name, params, inputs, outputs, action in tqdm(steps, desc=f"pipeline {profile.name}", unit="step"):
        # Inputs are fingerprinted when the step is reached: upstream steps have written them by then.
        key = fingerprint({"step": name, **params}, inputs)
        force = "all" in args.force or name in args.force
        results.append(run_step(settings.data_dir, name, key, outputs, action, force))
    print(summary_table(results))
    return 0
