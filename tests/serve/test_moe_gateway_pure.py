"""How the gateway lays out `empathy-moe` (no engine started): catalog, its own engine, upstream choice."""

from __future__ import annotations

import json
from pathlib import Path

from serve.catalog import MOE_NAME, load_catalog
from serve.lifecycle import moe_engine
from serve.upstreams import Upstream, pick


def _data_dir(tmp_path: Path, with_moe: bool) -> Path:
    if with_moe:
        (tmp_path / "moe").mkdir()
        config = {"architectures": ["EmpathyMoeForCausalLM"]}
        (tmp_path / "moe" / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_catalog_lists_empathy_moe_only_with_an_artifact(tmp_path: Path) -> None:
    assert load_catalog(_data_dir(tmp_path, False)).moe is None
    catalog = load_catalog(_data_dir(tmp_path, True))
    assert catalog.moe == str((tmp_path / "moe").resolve())
    assert MOE_NAME in catalog.gateway_models() and catalog.adapter_for_model(MOE_NAME) == MOE_NAME
    assert MOE_NAME not in catalog.paths  # never a LoRA module of the base engine


def test_moe_gets_an_engine_of_its_own_unless_served_elsewhere_or_off(tmp_path: Path) -> None:
    from empathy.settings import get_settings

    catalog = load_catalog(_data_dir(tmp_path, True))
    served, supervisor = moe_engine(get_settings(data_dir=str(tmp_path), moe_vllm_port=8123), catalog)
    assert served.moe and supervisor is not None
    assert supervisor.spec.served_name == MOE_NAME and supervisor.spec.port == 8123
    assert supervisor.spec.model == catalog.moe and not supervisor.spec.lora_modules
    elsewhere, none = moe_engine(get_settings(data_dir=str(tmp_path), moe_upstreams=["http://h:1"]), catalog)
    assert elsewhere.moe and none is None
    off, none = moe_engine(get_settings(data_dir=str(tmp_path), moe_serve=False), catalog)
    assert off.moe is None and none is None and MOE_NAME not in off.gateway_models()


def test_requests_go_to_the_engine_that_serves_their_model() -> None:
    general, moe = Upstream("g", healthy=True), Upstream("m", healthy=True, models=frozenset({MOE_NAME}))
    moe.outstanding = -5  # the least loaded, yet never picked for other models
    assert pick([general, moe], "base") is general and pick([general, moe], "blend-0.5-ab") is general
    assert pick([general, moe], MOE_NAME) is moe
    moe.healthy = False
    assert pick([general, moe], MOE_NAME) is None  # 503 while the MoE engine is down, not the wrong model


def test_the_vllm_plugin_registers_the_moe_architecture() -> None:
    from vllm import ModelRegistry
    from vllm.model_executor.models.llama import LlamaForCausalLM

    from serve.moe_model import EmpathyMoeForCausalLM
    from serve.vllm_plugin import MOE_ARCHITECTURE, register

    register()
    assert MOE_ARCHITECTURE in ModelRegistry.get_supported_archs()
    assert issubclass(EmpathyMoeForCausalLM, LlamaForCausalLM)
