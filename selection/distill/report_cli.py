"""`empathy select distill report [--name NAME] [--out DIR]`: calibration PNGs of a fitted distilled judge
on its held-out part (stored in the artifact at fit time, so no model is run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy select distill report",
                                     description="Predicted vs teacher scatter plots and bucket confusion.")
    parser.add_argument("--name", default=None, help="artifact name (default EMPATHY_DISTILL_NAME)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <artifact>/report)")
    parser.add_argument("--data-dir", type=Path, default=None, help="artifact folder (EMPATHY_DATA_DIR)")
    return parser


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from empathy.errors import DataError
    from empathy.settings import get_settings
    from selection.distill.artifact import artifact_dir, read_meta
    from selection.distill.fit_cli import format_discard_kinds, format_metrics, format_selection
    from selection.distill.metrics import discard_kinds
    from selection.distill.report import write_report
    from selection.distill.stacked import DISCARD

    args = build_parser().parse_args(argv)
    settings = get_settings(data_dir=args.data_dir, distill_name=args.name)
    folder = artifact_dir(settings.data_dir, settings.distill_name)
    meta = read_meta(folder)
    heldout_path = folder / "heldout.npz"
    if not heldout_path.is_file():
        raise DataError(f"{heldout_path} is missing; re-fit: `empathy select distill fit --name {meta.name}`")
    heldout = np.load(heldout_path)
    thresholds = tuple(meta.extra.get("thresholds", (5.0, 5.0)))
    paths = write_report(heldout["true"], heldout["pred"], args.out or folder / "report", meta.name,
                         (float(thresholds[0]), float(thresholds[1])),
                         np.array(meta.extra["confusion"]) if "confusion" in meta.extra else None)
    print(format_metrics(meta.metrics))
    print(format_selection(meta.extra))
    decided = heldout["codes"] == DISCARD if "codes" in heldout.files else None
    print(format_discard_kinds(discard_kinds(heldout["true"], decided, *map(float, thresholds))))
    for path in paths:
        print(f"wrote {path}")
    return 0
