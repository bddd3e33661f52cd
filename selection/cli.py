"""`empathy select ...`: one module per subcommand."""

from __future__ import annotations

from empathy.subcommands import dispatch

COMMANDS = {
    "score": ("selection.commands.score", "score a split with a judge (resumable; re-asks nothing stored)"),
    "import-scores": ("selection.commands.import_scores", "import released judge scores as a judge"),
    "split": ("selection.commands.split", "apply the selection rule and write the subsets (JSONL)"),
    "report": ("selection.commands.report", "counts, (S, R) heat-map, per-emotion fractions"),
    "distill": ("selection.distill.cli", "fit / report a distilled judge learned from imported scores"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("select", COMMANDS, argv)
