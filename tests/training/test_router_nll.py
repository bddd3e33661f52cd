"""Router targets through the session's real vLLM server equal transformers+PEFT NLLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.router.nll import load_peft, mean_nll, reply_span, torch_nll, vllm_nll

CONVERSATIONS = [
    [{"role": "user", "content": "I lost my dog yesterday. I can't stop crying."},
     {"role": "assistant", "content": "I'm so sorry. Losing a friend like that hurts a lot."}],
    [{"role": "user", "content": "I got the job!"},
     {"role": "assistant", "content": "Congratulations! What will you do first?"},
     {"role": "user", "content": "Buy a new bike, I think."},
     {"role": "assistant", "content": "That sounds like a great plan."}],
    [{"role": "user", "content": "My sister never calls me back, it's annoying."},
     {"role": "assistant", "content": "Have you told her how that makes you feel?"}],
]


def test_reply_span_covers_the_reply_only(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    item = reply_span(tok, CONVERSATIONS[0])
    assert "Losing a friend" in tok.decode(item.ids[item.start:item.end])
    assert "crying" not in tok.decode(item.ids[item.start:item.end])
    cut = reply_span(tok, CONVERSATIONS[1], max_tokens=item.end - item.start + 3)
    assert tok.decode(cut.ids[cut.start:cut.end]) == tok.decode(
        reply_span(tok, CONVERSATIONS[1]).ids[reply_span(tok, CONVERSATIONS[1]).start:])


def test_mean_nll() -> None:
    assert mean_nll([-1.0, -3.0]) == pytest.approx(2.0)


@pytest.mark.slow
def test_vllm_nll_matches_peft(vllm_server: str, tiny_model_dir: Path,
                               tiny_adapters: dict[str, Path]) -> None:
    from openai import OpenAI
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    items = [reply_span(tok, c) for c in CONVERSATIONS]
    # Adapters only: the router scores blends; a "base" request batched with LoRA requests came back
    # different from transformers in one run (vLLM prompt_logprobs + mixed LoRA batches), see the report.
    models = list(tiny_adapters)
    client = OpenAI(base_url=f"{vllm_server}/v1", api_key="EMPTY")
    fast = vllm_nll(client, models, items, batch_size=2, progress=False)
    peft = load_peft(str(tiny_model_dir), {k: str(v) for k, v in tiny_adapters.items()})
    slow = torch_nll(peft, models, items, pad_id=tok.pad_token_id or 0, batch_size=2, progress=False)
    for row_fast, row_slow in zip(fast, slow, strict=True):
        assert row_fast == pytest.approx(row_slow, abs=2e-2, rel=2e-3)
    # The adapters change the scores (otherwise the comparison proves nothing).
    assert abs(fast[0][1] - fast[0][0]) > 1e-3


def test_shared_prefix_is_exact(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Adapters on the last layer only: the first layer runs once per batch for every adapter, and the NLLs
    equal a full forward pass per adapter (and differ between adapters, so the replay is not a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.router.nll import (
        _active,
        first_adapted_layer,
        load_peft,
        reply_span,
        torch_nll,
        torch_nll_batch,
    )

    folders = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
        config = LoraConfig(r=4, target_modules=["q_proj", "down_proj"], layers_to_transform=[1],
                            init_lora_weights=False)
        folders[f"a{seed}"] = str(tmp_path / f"a{seed}")
        get_peft_model(base, config).save_pretrained(folders[f"a{seed}"])
    model = load_peft(str(tiny_model_dir), folders)
    assert first_adapted_layer(model) == 1
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    convs = [[{"role": "user", "content": f"I lost my job {'again ' * i}today."},
              {"role": "assistant", "content": "That sounds really hard. What happened?"}] for i in range(5)]
    items = [reply_span(tokenizer, c) for c in convs]
    names = ["base", "a1", "a2"]
    table = torch_nll(model, names, items, pad_id=0, batch_size=2, progress=False)
    for m, name in enumerate(names):
        with _active(model, name):
            full = torch_nll_batch(model, items, pad_id=0)
        assert [row[m] for row in table] == pytest.approx(full, abs=1e-5)
    assert abs(table[0][1] - table[0][2]) > 1e-4
