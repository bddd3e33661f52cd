"""`empathy train base-model`: prepare the default base model (offline-safe) and print its folder."""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy train base-model", description=__doc__)
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empathy.logs import setup_logging
    from empathy.settings import get_settings
    from training.base_model import prepare_default_model

    settings = get_settings(data_dir=args.data_dir)
    setup_logging(settings.log_level)
    print(prepare_default_model(settings.data_dir, force=args.force))
    return 0
