"""`empathy up`: make whatever is missing (default model, experts), then serve the chatbot and its UI.

A second run finds everything in `<data_dir>` and is up in about the time vLLM needs to start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from empathy.errors import EmpathyError

if TYPE_CHECKING:
    from empathy.settings import Settings

EXPERTS = ("sensibility", "rationality")
PIPELINE_ESTIMATE = ("quick: about 20 minutes on a 2-core CPU the first time, 10 of them fitting the "
                     "distilled judge; standard: about 90; later runs reuse everything")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy up", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None, help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--host", default=None, help="gateway address (EMPATHY_HOST)")
    parser.add_argument("--port", type=int, default=None, help="gateway port (EMPATHY_PORT)")
    parser.add_argument("--train", action="store_true",
                        help="train your own experts with the pipeline (--profile) instead of serving the "
                        "committed release; local experts always take precedence over the release")
    parser.add_argument("--profile", default="quick",
                        help="pipeline profile for --train, or when there is neither a release nor experts")
    parser.add_argument("--skip-pipeline", action="store_true",
                        help="serve even without experts (the base model only)")
    parser.add_argument("--verbose", action="store_true", help="show the pipeline's logs on the console")
    return parser


def missing_experts(data_dir: Path) -> list[str]:
    from empathy.layout import Layout

    return [e for e in EXPERTS if not (Layout(data_dir).expert(e) / "adapter_config.json").is_file()]


def run_pipeline(data_dir: Path, profile: str, verbose: bool) -> None:
    """The pipeline in a child process: its memory (torch, the judge) is returned before serving starts."""
    print(f"empathy up: running `empathy pipeline --profile {profile}` into {data_dir} "
          f"({PIPELINE_ESTIMATE}); its logs go to {data_dir / 'logs' / 'pipeline.log'}.", flush=True)
    started = time.monotonic()
    cmd = [sys.executable, "-m", "empathy", "pipeline", "--profile", profile,
           *(["--verbose"] if verbose else [])]
    done = subprocess.run(cmd, env={**os.environ, "EMPATHY_DATA_DIR": str(data_dir)}, check=False)
    if done.returncode != 0:
        raise EmpathyError(f"`{' '.join(cmd[2:])}` failed (exit {done.returncode}); its output above says "
                           "why. Fix it and run `empathy up` again: finished steps are reused.")
    print(f"empathy up: pipeline finished in {(time.monotonic() - started) / 60:.1f} min.", flush=True)


def use_release(settings: Settings) -> bool:
    """Install the committed release into a data dir without experts; False when there is no release."""
    from empathy.base_model import base_model_path
    from training.release import default_release_dir, install_release

    release = default_release_dir()
    if not (release / "manifest.json").is_file():
        return False
    base = base_model_path(settings)
    manifest = install_release(release, settings.data_dir, base, settings.blend_grid)
    print(f"empathy up: no experts of your own in {settings.data_dir / 'experts'}; serving the release "
          f"({manifest.get('profile')} profile, commit {str(manifest.get('commit'))[:10]}, hashes checked). "
          "`empathy up --train` trains your own.", flush=True)
    return True


def banner(url: str, api_key: str | None) -> str:
    key = api_key or "none"
    return f"""
  ✅ empathy-router is up
     UI:   {url}/
     API:  {url}/v1   (OpenAI-compatible; models: empathy, empathy-sensibility, empathy-rationality, base)

  Python:
     from openai import OpenAI
     client = OpenAI(base_url="{url}/v1", api_key="{key}")
     reply = client.chat.completions.create(
         model="empathy", messages=[{{"role": "user", "content": "I failed my exam today."}}])
     print(reply.choices[0].message.content, reply.model_extra.get("empathy"))
"""


def announce_when_ready(url: str, api_key: str | None, started: float, timeout: float = 900.0) -> None:
    """Poll the gateway until an engine is healthy (so a chat works), then print the URLs (serve blocks
    the main thread)."""
    deadline = time.monotonic() + timeout
    page_at = None
    while time.monotonic() < deadline:
        try:
            if page_at is None and httpx.get(f"{url}/", timeout=5.0).status_code == 200:
                page_at = time.monotonic() - started
                print(f"empathy up: UI page served after {page_at:.0f} s; waiting for vLLM to load the model "
                      "and adapters.", flush=True)
            if httpx.get(f"{url}/health", timeout=5.0).status_code == 200:
                print(banner(url, api_key), f"    (ready {time.monotonic() - started:.0f} s after "
                      "`empathy up` started)\n", flush=True)
                return
        except httpx.HTTPError:
            pass
        time.sleep(2.0)


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = build_parser().parse_args(argv)
    from empathy.settings import get_settings
    from training.base_model import prepare_default_model

    settings = get_settings(data_dir=args.data_dir, host=args.host, port=args.port)
    data_dir = settings.data_dir
    print(f"empathy up: preparing the default base model in {data_dir / 'models'} (reused when present).",
          flush=True)
    prepare_default_model(data_dir)
    if args.train or (missing_experts(data_dir) and not args.skip_pipeline and not use_release(settings)):
        run_pipeline(data_dir, args.profile, args.verbose)
    url = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
    api_key = settings.api_keys[0] if settings.api_keys else None
    threading.Thread(target=announce_when_ready, args=(url, api_key, started), daemon=True).start()
    print(f"empathy up: starting `empathy serve` on {url} (vLLM takes ~30-60 s to start).", flush=True)
    from serve.cli import main as serve_main

    serve_argv = [*(["--data-dir", str(args.data_dir)] if args.data_dir else []),
                  *(["--host", args.host] if args.host else []),
                  *(["--port", str(args.port)] if args.port else [])]
    return int(serve_main(serve_argv) or 0)
