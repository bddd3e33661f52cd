"""The OpenAI surface through the official SDK: models, chat (streamed and not) per model, routing."""

from __future__ import annotations

import uuid

import openai
import pytest

from tests.serve.conftest import Running

pytestmark = pytest.mark.slow
HELLO = [{"role": "user", "content": "I failed my driving test again today."}]


def test_models_list(gateway: Running) -> None:
    names = {m.id for m in gateway.client().models.list().data}
    assert {"empathy", "empathy-sensibility", "empathy-rationality", "base"} <= names


@pytest.mark.parametrize("model", ["empathy", "empathy-sensibility", "empathy-rationality", "base"])
def test_chat_each_model(gateway: Running, model: str) -> None:
    client = gateway.client()
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO, max_tokens=5,
                                                            temperature=0)
    reply = raw.parse()
    assert reply.choices[0].message.content is not None
    assert raw.headers["x-request-id"]
    assert f"adapter={reply.model}" in raw.headers["x-empathy-route"]
    assert reply.model_extra["empathy"]["adapter"] == reply.model
    chunks = list(client.chat.completions.create(model=model, messages=HELLO, max_tokens=5, stream=True,
                                                 temperature=0))
    assert chunks[0].model_extra["empathy"]["adapter"] == chunks[0].model
    assert all("empathy" not in (c.model_extra or {}) for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content  # greedy: the stream says the same as the JSON reply


def test_routed_header_and_body(gateway: Running) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="empathy", messages=[{"role": "user", "content": "My dog died this morning."}], max_tokens=3)
    field = raw.parse().model_extra["empathy"]
    grid = gateway.gateway.catalog.grid
    assert field["source"] == "router" and field["blend"] in grid
    assert len(field["probs"]) == len(grid) and abs(sum(field["probs"]) - 1) < 1e-4
    assert field["adapter"] == gateway.gateway.catalog.blends[field["blend"]]
    assert raw.headers["x-empathy-route"] == (f"blend={field['blend']:g}; adapter={field['adapter']}; "
                                              "source=router")


def test_overrides(gateway: Running) -> None:
    client, catalog = gateway.client(), gateway.gateway.catalog
    reply = client.chat.completions.create(model="empathy", messages=HELLO, max_tokens=2,
                                           extra_body={"empathy": {"blend": 0.75}})
    assert reply.model_extra["empathy"] == {"adapter": catalog.blends[0.75], "blend": 0.75,
                                            "source": "override", "experiment": None, "arm": None,
                                            "probs": None}
    assert reply.model == catalog.blends[0.75]  # the `empathy` field was stripped before vLLM saw the body
    reply = client.chat.completions.create(model="empathy", messages=HELLO, max_tokens=2,
                                           extra_body={"empathy": {"expert": "sensibility"}})
    assert reply.model == "empathy-sensibility" and reply.model_extra["empathy"]["blend"] == 1.0
    for bad, code in (({"blend": 0.6}, "off_grid"), ({"blend": 1.5}, None), ({"expert": "nope"}, None),
                      ({"blend": 0.5, "expert": "x"}, None)):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="empathy", messages=HELLO, max_tokens=2,
                                           extra_body={"empathy": bad})
        assert err.value.body["param"].startswith("empathy")
        assert code is None or err.value.body["code"] == code  # between grid points: off_grid (README)


def test_sticky_per_conversation(gateway: Running) -> None:
    """A conversation keeps its first routing decision; ids are new each run so no earlier request (of
    this test or another) decided for it."""
    client, run = gateway.client(), uuid.uuid4().hex
    opening = [{"role": "user", "content": f"I failed my driving test again today ({run})."}]
    later = [*opening, {"role": "assistant", "content": "Oh no."}, {"role": "user", "content": "Yes, sad."}]
    session = {"x-session-id": f"conv-{run}"}
    first = client.chat.completions.create(model="empathy", messages=opening, max_tokens=2,
                                           extra_headers=session)
    second = client.chat.completions.create(model="empathy", messages=later, max_tokens=2,
                                            extra_headers=session)
    assert first.model_extra["empathy"]["source"] == "router"
    assert second.model_extra["empathy"]["source"] == "sticky"
    assert second.model_extra["empathy"]["blend"] == first.model_extra["empathy"]["blend"]
    # Without a session id or user, the first user message identifies the conversation.
    alone = [{"role": "user", "content": f"My sister forgot my birthday ({run})."}]
    third = client.chat.completions.create(model="empathy", messages=alone, max_tokens=2)
    fourth = client.chat.completions.create(model="empathy", messages=[*alone, *later[1:]], max_tokens=2)
    assert third.model_extra["empathy"]["source"] == "router"
    assert fourth.model_extra["empathy"]["source"] == "sticky"
    assert fourth.model_extra["empathy"]["adapter"] == third.model_extra["empathy"]["adapter"]
    # The decision outlives the process memory (a restarted gateway, or another one on the same store).
    gateway.gateway.sticky.clear()
    fifth = client.chat.completions.create(model="empathy", messages=later, max_tokens=2,
                                           extra_headers=session)
    assert fifth.model_extra["empathy"]["source"] == "sticky"
    assert fifth.model_extra["empathy"]["adapter"] == first.model_extra["empathy"]["adapter"]
    assert gateway.gateway.store.get_route(f"session:conv-{run}") is not None


def test_standard_fields_pass_through(gateway: Running) -> None:
    client = gateway.client()
    reply = client.chat.completions.create(model="empathy-sensibility", messages=HELLO, n=2, max_tokens=4,
                                           temperature=0.8, top_p=0.9, seed=7, logprobs=True, top_logprobs=2,
                                           stop=["\n\n"], user="u-fields")
    assert len(reply.choices) == 2
    assert len(reply.choices[0].logprobs.content[0].top_logprobs) == 2
    again = client.chat.completions.create(model="empathy-sensibility", messages=HELLO, n=2, max_tokens=4,
                                           temperature=0.8, top_p=0.9, seed=7, logprobs=True,
                                           top_logprobs=2, stop=["\n\n"], user="u-fields")
    assert [c.message.content for c in again.choices] == [c.message.content for c in reply.choices]
    chunks = list(client.chat.completions.create(model="base", messages=HELLO, max_completion_tokens=3,
                                                 stream=True, stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_text_completions_pass_through(gateway: Running) -> None:
    reply = gateway.client().completions.create(model="base", prompt="Hello, my name is", max_tokens=3,
                                                extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == 3
    assert reply.model_extra["empathy"]["adapter"] == "base"
