"""The committed release: experts in bf16 safetensors and the router, with a manifest.

`pack_release` copies them out of a data dir that the pipeline filled (the `standard` profile), and writes
`manifest.json`: the commit, the exact command, hashes of the inputs (corpus, judge labels, base model), a
hash of every file of the release, the eval table and the router's held-out metrics. `install_release`
checks every hash, then puts the experts and the router into a data dir that has no experts of its own and
builds the exact blends from them, so `empathy serve` serves them like locally trained ones. Locally trained
experts always win: nothing is installed over them, and the pipeline replaces installed ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from empathy.errors import ModelError
from empathy.layout import EXPERTS, Layout
from empathy.router import ARTIFACT_JSON, ARTIFACT_NPZ
from training.sft_data import file_sha256 as sha256

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ROUTER_FILES = (ARTIFACT_JSON, ARTIFACT_NPZ)
MANIFEST = "manifest.json"
MAX_BYTES = 25 * 2**20
SOURCE_MARK = "release.json"  # in <data_dir>/experts/: these experts came from a release


def default_release_dir() -> Path:
    """`release/` at the top of the source tree (the package is installed editable from there)."""
    return Path(__file__).resolve().parents[1] / "release"


def git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def to_bf16(src: Path, dst: Path) -> None:
    """Copy a LoRA safetensors file with every floating tensor cast to bf16."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v)
               for k, v in load_file(str(src)).items()}
    save_file(tensors, str(dst), metadata={"format": "pt"})


def pack_expert(src: Path, dst: Path, base_model_name: str) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_model_name  # a name, not this machine's folder
    (dst / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    to_bf16(src / "adapter_model.safetensors", dst / "adapter_model.safetensors")
    meta = json.loads((src / "empathy_meta.json").read_text())
    keep = ("subset", "samples", "steps", "final_loss", "train_loss_mean", "tokens_seen", "settings",
            "subset_sha256", "fingerprint", "wall_time_s")
    (dst / "training.json").write_text(json.dumps({k: meta.get(k) for k in keep}, indent=2, default=str))


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def pack_release(data_dir: Path, out_dir: Path, info: dict[str, Any], base_model_name: str) -> dict[str, Any]:
    """Write the release folder from `data_dir`; `info` (command, inputs, eval table...) goes into the
    manifest. Refuses a release over 25 MB."""
    layout = Layout(data_dir)
    missing = [e for e in EXPERTS if not (layout.expert(e) / "adapter_config.json").is_file()]
    if missing or not (layout.router / ARTIFACT_JSON).is_file():
        raise ModelError(f"{data_dir} lacks experts {missing} or a router; run `empathy pipeline --profile "
                         "standard` into it first.")
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    for expert in EXPERTS:
        pack_expert(layout.expert(expert), staging / "experts" / expert, base_model_name)
    (staging / "router").mkdir(parents=True)
    for name in ROUTER_FILES:
        shutil.copy2(layout.router / name, staging / "router" / name)
    files = file_hashes(staging)
    size = sum((staging / f).stat().st_size for f in files)
    if size > MAX_BYTES:
        shutil.rmtree(staging)
        raise ModelError(f"the release would take {size / 2**20:.1f} MB, over the 25 MB limit; train with "
                         "fewer LoRA layers (EMPATHY_LORA_LAYERS) or a lower rank.")
    manifest = {"format_version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "commit": git_commit(default_release_dir().parent), "bytes": size, **info, "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return manifest


def verify_release(release_dir: Path) -> dict[str, Any]:
    """The manifest, after checking that every file it lists is there with its hash (and no file is extra)."""
    path = release_dir / MANIFEST
    if not path.is_file():
        raise ModelError(f"no release manifest at {path}; the release folder is incomplete.")
    manifest = json.loads(path.read_text())
    found = file_hashes(release_dir)
    expected = manifest.get("files", {})
    bad = sorted(name for name in expected if found.get(name) != expected[name])
    extra = sorted(set(found) - set(expected))
    if bad or extra:
        raise ModelError(f"release {release_dir} does not match its manifest: changed or missing {bad}, "
                         f"unlisted {extra}. Restore it from git (`git checkout -- {release_dir}`).")
    return manifest


def has_local_experts(data_dir: Path) -> bool:
    layout = Layout(data_dir)
    return (any((layout.expert(e) / "adapter_config.json").is_file() for e in EXPERTS)
            and not (layout.experts / SOURCE_MARK).is_file())


def install_release(release_dir: Path, data_dir: Path, base_model: str, grid: list[float]) -> dict[str, Any]:
    """Verify the release and install its experts and router into `data_dir`, then build the blends.
    Never overwrites locally trained experts (ModelError if there are some)."""
    from training.blend_files import build_blends

    layout = Layout(data_dir)
    if has_local_experts(data_dir):
        raise ModelError(f"{layout.experts} holds locally trained experts; they take precedence over "
                         "the release, which is not installed.")
    manifest = verify_release(release_dir)
    for expert in EXPERTS:
        dst = layout.expert(expert)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(release_dir / "experts" / expert, dst)
        config = json.loads((dst / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base_model
        (dst / "adapter_config.json").write_text(json.dumps(config, indent=2))
    layout.router.mkdir(parents=True, exist_ok=True)
    for name in ROUTER_FILES:
        shutil.copy2(release_dir / "router" / name, layout.router / name)
    router_grid = json.loads((layout.router / ARTIFACT_JSON).read_text())["grid"]
    build_blends(sens_dir=layout.expert("sensibility"), rat_dir=layout.expert("rationality"),
                 blends_dir=layout.blends, grid=[float(w) for w in router_grid] or grid,
                 base_model=base_model)
    (layout.experts / SOURCE_MARK).write_text(json.dumps(
        {"release": str(release_dir), "commit": manifest.get("commit"), "created": manifest.get("created")}))
    return manifest
