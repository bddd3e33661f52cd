"""`empathy config`: every setting with its environment variable, current value and description."""

from __future__ import annotations

import argparse
import json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy config", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    return parser


def rows() -> list[dict[str, str]]:
    from empathy.settings import Settings, get_settings

    current = get_settings()
    out = []
    for name, field in Settings.model_fields.items():
        value = getattr(current, name)
        if "key" in name and value:
            value = "***"
        out.append({"env": f"EMPATHY_{name.upper()}", "value": json.dumps(value, default=str),
                    "description": field.description or ""})
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    table = rows()
    if args.json:
        print(json.dumps({row["env"]: json.loads(row["value"]) for row in table}, indent=2))
        return 0
    for row in table:
        print(f"{row['env']} = {row['value']}\n    {row['description']}")
    return 0
