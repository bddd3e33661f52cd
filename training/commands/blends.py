"""`empathy train blends`: build the exact blends a*dW_sens + (1-a)*dW_rat for a grid of weights a."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy train blends", description=__doc__)
    parser.add_argument("--grid", help="comma-separated weights in [0, 1] (EMPATHY_BLEND_GRID), e.g. 0,0.5,1")
    for subset in ("sensibility", "rationality"):
        parser.add_argument(f"--{subset}", type=Path,
                            help=f"expert folder (default <data_dir>/experts/{subset})")
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--base-model", help="base model the experts must belong to (EMPATHY_BASE_MODEL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empathy.base_model import base_model_path
    from empathy.layout import Layout
    from empathy.logs import setup_logging
    from empathy.settings import get_settings
    from training.blend_files import build_blends
    from training.blends import parse_grid, validate_grid

    settings = get_settings(data_dir=args.data_dir, base_model=args.base_model)
    setup_logging(settings.log_level)
    grid = parse_grid(args.grid) if args.grid is not None else validate_grid(settings.blend_grid)
    layout = Layout(settings.data_dir)
    index = build_blends(
        sens_dir=args.sensibility or layout.expert("sensibility"),
        rat_dir=args.rationality or layout.expert("rationality"),
        blends_dir=layout.blends,
        grid=grid,
        base_model=base_model_path(settings),
    )
    print(json.dumps({"rank": index["rank"], "blends": [b["name"] for b in index["blends"]]}, indent=2))
    return 0
