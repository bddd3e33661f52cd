"""`empathy select distill <fit|report>`: one module per subcommand."""

from __future__ import annotations

from empathy.subcommands import dispatch

COMMANDS = {
    "fit": ("selection.distill.fit_cli", "learn a judge from imported scores; held-out metrics vs baseline"),
    "report": ("selection.distill.report_cli", "scatter of predicted vs teacher S and R, bucket confusion"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("select distill", COMMANDS, argv)
