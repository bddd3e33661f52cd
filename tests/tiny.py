"""Tiny real models for tests: a random 2-layer Llama with the default tokenizer, random LoRA adapters."""

from __future__ import annotations

from pathlib import Path


def make_tiny_llama(folder: Path, tokenizer_source: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 32: a size vLLM's CPU attention supports
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_random_lora(base: Path, folder: Path, seed: int, rank: int = 8) -> Path:
    """A LoRA on every linear projection with random A and B (so its delta is not zero)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=rank, lora_alpha=4 * rank, lora_dropout=0.0, init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(folder)
    return folder


# A handful of chats in the subset JSONL layout that `empathy select split` writes (reply = last message).
TINY_CHATS = {
    "sensibility": [
        ("I failed my driving test again today.", "Oh no, that sounds so disheartening. I'm really sorry."),
        ("My dog passed away last night.", "I'm so sorry for your loss. Losing a friend hurts deeply."),
        ("I finally got the job I wanted!", "That's wonderful! I'm so happy for you, you must be thrilled!"),
        ("I feel lonely since I moved.", "That sounds really hard. Feeling alone in a new place is painful."),
        ("My sister forgot my birthday.", "Aww, that must have stung. It's hurtful to feel forgotten."),
        ("I'm nervous about my surgery.", "That's completely understandable. I'm here for you."),
    ],
    "rationality": [
        ("I failed my driving test again today.", "What went wrong? Practising that part could help."),
        ("My dog passed away last night.", "How old was he? Did the vet say what caused it?"),
        ("I finally got the job I wanted!", "When do you start? Is it in the field you studied?"),
        ("I feel lonely since I moved.", "Have you looked for clubs or classes nearby to meet people?"),
        ("My sister forgot my birthday.", "Maybe she was busy; have you told her how you felt about it?"),
        ("I'm nervous about my surgery.", "What kind of surgery is it? Asking the doctor may ease worries."),
    ],
}


def write_tiny_subsets(data_dir: Path) -> Path:
    """`<data_dir>/subsets/{sensibility,rationality}.jsonl` with the chats above."""
    import json

    folder = data_dir / "subsets"
    folder.mkdir(parents=True, exist_ok=True)
    for subset, chats in TINY_CHATS.items():
        rows = [
            {"id": f"{subset}-{i}", "messages": [{"role": "user", "content": prompt},
                                                 {"role": "assistant", "content": reply}],
             "emotion": "sad", "situation": prompt, "sensibility": 7.0, "rationality": 4.0}
            for i, (prompt, reply) in enumerate(chats)
        ]
        (folder / f"{subset}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def make_tiny_artifacts(data_dir: Path, base: Path,
                        grid: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> Path:
    """Real artifacts on the tiny model: both experts trained for a few steps, then the blend grid.

    The learning rate is high on purpose so that a few steps give adapters that differ visibly.
    """
    from training.blend_files import build_blends
    from training.experts import ExpertJob, train_expert

    write_tiny_subsets(data_dir)
    for subset in ("sensibility", "rationality"):
        job = ExpertJob(
            subset=subset, subset_file=data_dir / "subsets" / f"{subset}.jsonl",
            out_dir=data_dir / "experts" / subset, base_model=str(base.resolve()), learning_rate=1e-2,
            max_steps=3, batch_size=2, max_length=128, save_steps=100,
            seed=1 if subset == "sensibility" else 2,
        )
        train_expert(job)
    build_blends(data_dir / "experts" / "sensibility", data_dir / "experts" / "rationality",
                 data_dir / "blends", list(grid), base_model=str(base.resolve()))
    return data_dir
