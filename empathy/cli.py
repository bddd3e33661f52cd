"""The `empathy` console script: a thin dispatcher over one small module per subcommand.

Each subcommand module exposes `main(argv) -> int` with its own argparse parser and imports its
heavy dependencies inside `main`, so `empathy --help` stays instant.
"""

from __future__ import annotations

import importlib
import sys

from empathy.errors import EmpathyError

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "select": ("selection.cli", "score a dialogue corpus with a judge and select the expert datasets"),
    "train": ("training.cli", "prepare the base model, train experts, build blends, train the router"),
    "eval": ("training.eval_cli", "generate on a test split and compute the paper's metrics"),
    "pipeline": ("training.pipeline", "chain select -> experts -> blends -> router on a profile"),
    "serve": ("serve.cli", "serve the routed experts behind an OpenAI-compatible gateway and the UI"),
    "config": ("empathy.config_cmd", "print every setting: environment variable, value, description"),
    "up": ("empathy.up", "set up whatever is missing (model, experts) and serve: the README's main command"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: empathy <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `empathy <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] in {"-V", "--version"}:
        from empathy import __version__

        print(f"empathy-router {__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"empathy: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    try:
        return int(module.main(args[1:]) or 0)
    except EmpathyError as exc:
        print(f"empathy {args[0]}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"empathy {args[0]}: interrupted; finished work is saved, run the same command to resume.",
              file=sys.stderr)
        return 130
