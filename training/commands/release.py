"""`empathy train release`: pack the experts and router of a pipeline data dir as the committed release
(bf16 safetensors, manifest with commit, command, input hashes and the eval table), or `--verify` one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from empathy.settings import Settings

COMPARISONS = (("sensibility", "full"), ("sensibility", "rationality"), ("routed", "blend:0.5"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy train release", description=__doc__)
    parser.add_argument("--data-dir", help="the pipeline's artifact folder to pack (EMPATHY_DATA_DIR)")
    parser.add_argument("--out", type=Path, help="release folder (default: release/ in the source tree)")
    parser.add_argument("--profile", default="standard", help="the pipeline profile that made it")
    parser.add_argument("--command", dest="made_by", help="the exact command that made the data dir")
    parser.add_argument("--verify", action="store_true", help="only check the release against its manifest")
    return parser


def input_hashes(settings: Settings) -> dict[str, Any]:
    """What the release was made from: the corpus splits, the judge's labels, the base model weights."""
    from empathy.base_model import base_model_path
    from training.release import sha256

    corpus = Path(settings.corpus_path)
    files: dict[str, Path] = {f"corpus/{s}.csv": corpus / f"{s}.csv" for s in ("train", "valid", "test")}
    for key in ("distill_labels_path", "distill_discard_path"):
        path = getattr(settings, key, None)
        if path is not None:
            files[f"judge/{Path(path).name}"] = Path(path)
    base = Path(base_model_path(settings))
    files.update({f"base_model/{p.name}": p for p in sorted(base.glob("*.safetensors"))})
    return {name: sha256(path) for name, path in files.items() if path.is_file()}


def eval_summary(data_dir: Path) -> dict[str, Any]:
    from training.evaluation.run import load_runs
    from training.evaluation.table import render_comparisons, render_table

    runs = [r for r in load_runs(data_dir) if r.get("split") == "test"]
    if not runs:
        return {}
    labels = {r["model"] for r in runs}
    pairs = [p for p in COMPARISONS if set(p) <= labels]
    return {"eval_table": render_table(runs), "eval_comparisons": render_comparisons(runs, pairs),
            "eval_runs": {r["model"]: {"n": r["n"], "metrics": r["metrics"]} for r in runs}}


def pipeline_steps(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Each pipeline step's last run: its wall time and the commit of the code that ran it."""
    from empathy.layout import Layout

    records = sorted(Layout(data_dir).pipeline.glob("*.json"))
    keys = ("seconds", "commit", "finished")
    return {p.stem: {k: v for k, v in json.loads(p.read_text()).items() if k in keys} for p in records}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empathy.base_model import WHEEL_SPEC
    from empathy.layout import Layout
    from empathy.settings import get_settings
    from training.release import default_release_dir, pack_release, verify_release
    from training.settings import DEFAULT_BASE_MODEL

    out = args.out or default_release_dir()
    if args.verify:
        manifest = verify_release(out)
        print(f"release {out}: {len(manifest['files'])} files match the manifest "
              f"(commit {manifest['commit']})")
        return 0
    settings = get_settings(data_dir=args.data_dir)
    d = settings.data_dir
    layout = Layout(d)
    router = json.loads((layout.router / "router.json").read_text())
    info = {"profile": args.profile, "command": args.made_by or " ".join(["empathy", *sys.argv[1:]]),
            "base_model": settings.base_model if settings.base_model != DEFAULT_BASE_MODEL else
            f"{DEFAULT_BASE_MODEL} (from the PyPI wheel {WHEEL_SPEC})",
            "inputs_sha256": input_hashes(settings), "steps": pipeline_steps(d),
            "router": {k: router.get(k) for k in ("grid", "n_samples", "l2", "temperature", "metrics")},
            "subsets": json.loads(layout.subsets_manifest.read_text())
            if layout.subsets_manifest.is_file() else None,
            **eval_summary(d)}
    manifest = pack_release(d, out, info, DEFAULT_BASE_MODEL)
    print(f"release written to {out}: {len(manifest['files'])} files, {manifest['bytes'] / 2**20:.1f} MB")
    return 0
