"""Mean token NLL of the gold reply given its context, under one adapter: through vLLM or transformers+PEFT.

Both backends score the same token ids: the chat-templated conversation is tokenized once here, and the
reply's span is the tokens after the templated context (with the generation prompt). vLLM receives the ids
as the prompt of a completions request with `prompt_logprobs=0`, which returns the log-probability of each
prompt token; transformers computes the same with a forward pass.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from empathy.errors import DataError, ModelError


@dataclass(frozen=True)
class Scored:
    """Token ids of context + reply and the half-open span [start, end) of the reply's tokens."""

    ids: list[int]
    start: int
    end: int


def reply_span(tokenizer: Any, messages: Sequence[dict[str, str]], max_tokens: int = 1024) -> Scored:
    """Tokenize `messages` (reply last) with the chat template and locate the reply's tokens.

    Trailing whitespace-only tokens after the end-of-turn marker are left out: they carry no information
    about the reply. Long contexts are cut from the left so the reply always fits in `max_tokens`.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise DataError("a scored conversation must end with the gold reply as an assistant message.")
    prompt = tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not full.startswith(prompt):
        raise DataError("the chat template does not render the context as a prefix of the conversation; "
                        "the reply's tokens cannot be located (use a model with a standard chat template).")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = p_ids + tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    end = len(ids)
    while end > len(p_ids) + 1 and not tokenizer.decode(ids[end - 1:end]).strip():
        end -= 1
    ids = ids[:end]
    start = len(p_ids)
    cut = max(0, len(ids) - max_tokens)
    if cut >= start:
        raise DataError(f"a reply of {end - start} tokens does not fit in {max_tokens} tokens.")
    return Scored(ids[cut:], start - cut, end - cut)


def mean_nll(token_logprobs: Sequence[float]) -> float:
    if not token_logprobs:
        raise ValueError("no reply tokens to average")
    return -sum(token_logprobs) / len(token_logprobs)


def _reply_logprobs(prompt_logprobs: Sequence[Any], item: Scored) -> list[float]:
    """Pick the logprob of the actual token at each reply position out of vLLM's prompt_logprobs."""
    values = []
    for pos in range(item.start, item.end):
        entry = prompt_logprobs[pos]
        if not entry:
            raise ModelError(f"vLLM returned no prompt logprob at position {pos}.")
        chosen = entry.get(str(item.ids[pos])) or entry.get(item.ids[pos])
        if chosen is None:
            raise ModelError(f"vLLM's prompt_logprobs at position {pos} lack the prompt token "
                             f"{item.ids[pos]}.")
        values.append(float(chosen["logprob"] if isinstance(chosen, dict) else chosen))
    return values


def vllm_nll_batch(client: Any, model: str, items: Sequence[Scored]) -> list[float]:
    """One completions request for a batch of token-id prompts; returns the mean reply NLL of each."""
    response = client.completions.create(
        model=model, prompt=[item.ids for item in items], max_tokens=1, temperature=0.0,
        extra_body={"prompt_logprobs": 0},
    )
    choices = sorted(response.choices, key=lambda c: c.index)
    out = []
    for choice, item in zip(choices, items, strict=True):
        extra = choice.model_extra or {}
        logprobs = getattr(choice, "prompt_logprobs", None) or extra.get("prompt_logprobs")
        if logprobs is None:
            raise ModelError(f"the vLLM server did not return prompt_logprobs for model {model!r}; it must "
                             "be a vLLM OpenAI server (the `prompt_logprobs` extra field).")
        out.append(mean_nll(_reply_logprobs(logprobs, item)))
    return out


def vllm_nll(client: Any, models: Sequence[str], items: Sequence[Scored], batch_size: int = 8,
             concurrency: int = 4, progress: bool = True) -> list[list[float]]:
    """NLL matrix [sample][model]; requests for all models run concurrently so vLLM batches across LoRAs."""
    from tqdm import tqdm

    jobs = [(m, s) for s in range(0, len(items), batch_size) for m in range(len(models))]
    table = [[math.nan] * len(models) for _ in items]
    with ThreadPoolExecutor(max_workers=concurrency) as pool, \
            tqdm(total=len(jobs), desc="NLL (vLLM)", unit="batch", disable=not progress) as bar:
        futures = {pool.submit(vllm_nll_batch, client, models[m], items[s:s + batch_size]): (m, s)
                   for m, s in jobs}
        for future, (m, s) in futures.items():
            for offset, value in enumerate(future.result()):
                table[s + offset][m] = value
            bar.update(1)
    return table


def batch_tensors(items: Sequence[Scored], pad_id: int) -> tuple[Any, Any, Any]:
    """Left-padded ids, attention mask and position ids of a batch (padded rows equal unpadded ones)."""
    import torch

    width = max(len(item.ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, item in enumerate(items):
        ids[row, width - len(item.ids):] = torch.tensor(item.ids)
        mask[row, width - len(item.ids):] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def torch_nll_batch(model: Any, items: Sequence[Scored], pad_id: int) -> list[float]:
    """Mean reply NLL of each item from one forward pass (fp32).

    Left padding puts every reply at the end of its row, so `logits_to_keep` limits the vocabulary
    projection (a fifth of a small model's compute) to the reply positions; explicit position ids keep
    padded rows identical to unpadded ones.
    """
    import torch

    ids, mask, positions = batch_tensors(items, pad_id)
    keep = max(item.end - item.start for item in items) + 1
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
    out = []
    width = ids.shape[1]
    for row, item in enumerate(items):
        # The token at position t is predicted by the logits at t - 1; the last logit predicts nothing.
        n = item.end - item.start
        targets = ids[row, width - n:]
        picked = logprobs[row, keep - 1 - n:keep - 1].gather(-1, targets[:, None]).squeeze(-1)
        out.append(float(-picked.mean()))
    return out


def first_adapted_layer(model: Any) -> int:
    """Index of the lowest decoder layer that any loaded adapter changes (the layers below it compute the
    same hidden states under every blend, so they are computed once: see `shared_prefix`)."""
    import re

    found = [int(m.group(1)) for name, _ in model.named_modules()
             if "lora_A" in name and (m := re.search(r"\.layers\.(\d+)\.", name))]
    return min(found) if found else 0


@contextlib.contextmanager
def shared_prefix(model: Any, items: Sequence[Scored], batches: Sequence[list[int]], pad_id: int
                  ) -> Iterator[Callable[[int], None]]:
    """Compute the unadapted layers' output once per batch; while open, the decoder starts from it
    (`select(b)` picks batch b's cached hidden state). Exact: those layers carry no adapter weights."""
    import torch
    from torch import nn

    start = first_adapted_layer(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    layers, norm = decoder.layers, decoder.norm
    cache = []
    if start > 0:
        decoder.layers, decoder.norm = nn.ModuleList(layers[:start]), nn.Identity()
        try:
            with torch.inference_mode():
                for batch in batches:
                    ids, mask, positions = batch_tensors([items[i] for i in batch], pad_id)
                    cache.append(decoder(input_ids=ids, attention_mask=mask, position_ids=positions
                                         ).last_hidden_state)
        finally:
            decoder.layers, decoder.norm = layers, norm

    class Replay(nn.Module):
        """Stands in for the shared layers: returns the cached hidden state of the batch being scored."""

        hidden: Any = None

        def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
            return self.hidden

    replay = Replay()

    def select(b: int) -> None:
        replay.hidden = cache[b] if cache else None

    if start > 0:
        decoder.layers = nn.ModuleList([replay, *layers[start:]])
    try:
        yield select
    finally:
        decoder.layers = layers


def peft_name(name: str) -> str:
    """PEFT adapter names become module keys, which may not contain dots (blend names do)."""
    return name.replace(".", "_")


def load_peft(base_model: str, adapters: dict[str, str]) -> Any:
    """The base model with every adapter loaded under `peft_name(name)` (switch with `set_adapter`)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    names = list(adapters)
    if not names:
        return model.eval()
    peft = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=peft_name(names[0]))
    for name in names[1:]:
        peft.load_adapter(adapters[name], adapter_name=peft_name(name))
    return peft.eval()


def torch_nll(model: Any, models: Sequence[str], items: Sequence[Scored], pad_id: int, batch_size: int = 8,
              progress: bool = True) -> list[list[float]]:
    """NLL matrix [sample][model] with transformers+PEFT (`models` are adapter names; "base" = no adapter).

    Each adapter is merged into the weights while it scores (no LoRA overhead per forward pass), samples
    are batched by length so rows carry little padding, and the layers below the lowest adapted layer run
    once per batch for all adapters (`shared_prefix`).
    """
    from tqdm import tqdm

    table = [[math.nan] * len(models) for _ in items]
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    with tqdm(total=len(models) * len(items), desc="NLL (transformers)", unit="sample",
              disable=not progress) as bar, shared_prefix(model, items, batches, pad_id) as select:
        for m, name in enumerate(models):
            with _active(model, name):
                for b, batch in enumerate(batches):
                    select(b)
                    for index, value in zip(batch, torch_nll_batch(model, [items[i] for i in batch], pad_id),
                                            strict=True):
                        table[index][m] = value
                    bar.update(len(batch))
    return table


@contextlib.contextmanager
def _active(model: Any, name: str) -> Iterator[None]:
    """Score with adapter `name` merged into the base weights (or with no adapter for "base")."""
    if not hasattr(model, "set_adapter"):
        yield
        return
    if name == "base":
        with model.disable_adapter():
            yield
        return
    model.set_adapter(peft_name(name))
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()
