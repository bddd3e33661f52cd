"""Dispatch for command groups (`empathy select <sub>`, `empathy train <sub>`): one module per subcommand."""

from __future__ import annotations

import importlib
import sys


def dispatch(group: str, commands: dict[str, tuple[str, str]], argv: list[str] | None) -> int:
    """Run `commands[argv[0]]`'s module `main(argv[1:])`; print the group's usage for -h or no argument."""
    args = sys.argv[2:] if argv is None else argv
    width = max(len(name) for name in commands)
    usage = "\n".join(
        [f"usage: empathy {group} <command> [options]", "", "commands:"]
        + [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in commands.items()]
    )
    if not args or args[0] in {"-h", "--help"}:
        print(usage)
        return 0
    if args[0] not in commands:
        print(f"empathy {group}: unknown command {args[0]!r}\n\n{usage}", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[args[0]][0])
    return int(module.main(args[1:]) or 0)
