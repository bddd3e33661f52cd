"""`empathy serve`: the OpenAI-compatible gateway (and the UI) over a supervised vLLM child or upstreams."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="empathy serve", description=__doc__)
    p.add_argument("--host", help="address to listen on (setting host)")
    p.add_argument("--port", type=int, help="gateway port (setting port)")
    p.add_argument("--upstream", action="append", dest="upstreams", metavar="URL",
                   help="vLLM OpenAI server to use instead of starting one; repeat for several replicas")
    p.add_argument("--data-dir", help="artifact folder with experts/, blends/, router/ (setting data_dir)")
    p.add_argument("--base-model", help="base model folder or id for the vLLM child (setting base_model)")
    p.add_argument("--vllm-port", type=int, help="port of the vLLM child (setting vllm_port)")
    p.add_argument("--api-key", action="append", dest="api_keys", metavar="KEY",
                   help="accepted bearer key; repeatable (setting api_keys; none: no auth)")
    p.add_argument("--admin-key", help="bearer key of the admin endpoints (setting admin_key)")
    p.add_argument("--experiments", dest="experiments_file", help="TOML/YAML experiments file")
    p.add_argument("--no-ui", dest="ui_enabled", action="store_const", const=False,
                   help="do not mount the Gradio UI at /")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--engine-only", action="store_true",
                   help="run only the vLLM server this gateway would start (the base model, the experts "
                   "and blends of --data-dir), in the foreground on --host and --vllm-port: an engine for "
                   "gateways on other machines that list it with --upstream")
    return p


def engine_command(settings: Any) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of the vLLM server `empathy serve` would start as its child, listening
    on `settings.host` (a replica's engine must be reachable from the gateways)."""
    from dataclasses import replace

    from serve.catalog import load_catalog
    from serve.lifecycle import engine_spec

    spec = replace(engine_spec(settings, load_catalog(Path(settings.data_dir))), host=settings.host)
    spec.validate()
    return spec.command(), spec.env()


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    engine_only = args.pop("engine_only")
    import uvicorn

    from empathy.settings import get_settings
    from serve.app import create_app
    from serve.jsonlog import setup_json_logging

    settings = get_settings(**args)
    if engine_only:
        command, env = engine_command(settings)
        os.nice(settings.vllm_nice)  # as nice as the child `empathy serve` would start (EMPATHY_VLLM_NICE)
        os.execvpe(command[0], command, env)  # vLLM replaces this process (signals go straight to it)
    setup_json_logging(settings.log_level)
    app = create_app(settings, freeze_gc=True)
    # uvicorn turns SIGINT/SIGTERM into the app's shutdown, which stops the vLLM child (no orphans).
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0
