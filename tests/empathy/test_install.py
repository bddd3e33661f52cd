"""The installed environment works: the CUDA-only torchvision/torchaudio/torchcodec are gone and the heavy
libraries import."""

from __future__ import annotations

import importlib.util
import subprocess
import sys


def test_vllm_and_transformers_import() -> None:
    # A fresh interpreter, as a user's process would be (imports here would be cached by other tests).
    code = "import transformers, peft, trl\nfrom vllm import LLM\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_cuda_only_vision_packages_are_not_installed() -> None:
    for name in ("torchvision", "torchaudio", "torchcodec"):
        assert importlib.util.find_spec(name) is None, f"{name} breaks transformers/vLLM on CPU; uninstall it"


def test_cli_help_lists_subcommands() -> None:
    result = subprocess.run([sys.executable, "-m", "empathy", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ("select", "train", "eval", "serve"):
        assert name in result.stdout
