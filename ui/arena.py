"""Arena tab: blind side-by-side answers from two arms, a vote, then the names are revealed.

The pair comes from the active experiment (GET /v1/experiments); without one, a random pair of the
gateway's models. It stays the same for every turn of a battle until the user votes or starts a new one.
Every vote carries the voter's id (`user`): a random id kept in the browser's localStorage, so the gateway
can hold one vote per pair and its daily cap per voter.
"""

from __future__ import annotations

import hashlib
import logging
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ui.client import GatewayClient, GatewayError
from ui.format import arm_request, pretty_name
from ui.streams import Pair, new_session_id, plain, stream_two

log = logging.getLogger("empathy.ui")
FALLBACK_MODELS = ("base", "empathy-full", "empathy-sensibility", "empathy-rationality", "empathy")
OUTCOMES = {"left": "a", "right": "b", "tie": "tie", "both_bad": "both_bad"}
HIDDEN = "<div class='arena-name'>🎭 Hidden until you vote</div>"
VOTER_KEY = "empathy-arena-voter"
REFUSED = (409, 429)  # the gateway refused this voter's vote (already voted on the pair, daily cap)


@dataclass(frozen=True)
class Contender:
    model: str  # a gateway model name or `blend:0.75`
    arm: str | None = None  # the experiment arm's name, when the pair comes from an experiment


@dataclass
class Battle:
    left: Contender
    right: Contender
    experiment: str | None = None
    session_id: str = field(default_factory=new_session_id)
    ids: dict[str, dict[int, str]] = field(default_factory=lambda: {"left": {}, "right": {}})
    last: dict[str, str | None] = field(default_factory=lambda: {"left": None, "right": None})
    voted: bool = False


def active_experiment(experiments: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    for exp in experiments:
        if exp.get("active") and len(exp.get("arms") or []) >= 2:
            return exp
    return None


def fallback_models(models: Sequence[str]) -> list[str]:
    """The fallback pool: the known names the gateway lists (`empathy-full` only when trained)."""
    listed = [m for m in FALLBACK_MODELS if m in models]
    return listed if len(listed) >= 2 else [m for m in FALLBACK_MODELS if m != "empathy-full"]


def choose_pair(experiments: Sequence[dict[str, Any]], models: Sequence[str],
                rng: random.Random) -> Battle:
    """Two arms of the active experiment (by traffic weight), else two random models; random sides."""
    exp = active_experiment(experiments)
    if exp is None:
        picks = [Contender(m) for m in rng.sample(fallback_models(models), 2)]
        return Battle(picks[0], picks[1])
    arms = list(exp["arms"])
    weights = [max(float(a.get("weight", 1.0) or 0.0), 1e-9) for a in arms]
    first = rng.choices(range(len(arms)), weights=weights)[0]
    rest = [i for i in range(len(arms)) if i != first]
    second = rng.choices(rest, weights=[weights[i] for i in rest])[0]
    picks = [Contender(str(arms[i]["model"]), str(arms[i].get("name"))) for i in (first, second)]
    rng.shuffle(picks)
    return Battle(picks[0], picks[1], experiment=str(exp.get("name")))


def new_battle(client: GatewayClient) -> Battle:
    try:
        experiments = client.experiments()
    except GatewayError as exc:
        log.warning("arena: experiments unavailable (%s); pairing the served models", exc)
        experiments = []
    try:
        models = client.models()
    except GatewayError as exc:
        log.warning("arena: model list unavailable (%s); pairing the fallback models", exc)
        models = []
    return choose_pair(experiments, models, random.Random())


def reveal(contender: Contender, experiment: str | None) -> str:
    arm = f" · arm <code>{contender.arm}</code> of <code>{experiment}</code>" if contender.arm else ""
    name = f"{pretty_name(contender.model)} <code>{contender.model}</code>{arm}"
    return f"<div class='arena-name revealed'>{name}</div>"


def stream_battle(client: GatewayClient, battle: Battle, histories: Pair) -> Iterator[Pair]:
    requests = (arm_request(battle.left.model, battle.experiment, battle.left.arm),
                arm_request(battle.right.model, battle.experiment, battle.right.arm))
    yield from stream_two(client, requests, histories, battle.session_id,
                          (battle.ids["left"], battle.ids["right"]), with_caption=False)


def last_id(ids: dict[int, str]) -> str | None:
    return ids[max(ids)] if ids else None


def vote_payload(battle: Battle, choice: str, voter: str | None = None) -> dict[str, Any]:
    """The pairwise vote of the wire contract: completion_a is the left answer, completion_b the right one,
    `user` the voter."""
    payload = {"type": "pairwise", "completion_a": last_id(battle.ids["left"]),
               "completion_b": last_id(battle.ids["right"]), "outcome": OUTCOMES[choice]}
    return {**payload, "user": voter} if voter else payload


def new_voter_id() -> str:
    return f"voter-{uuid.uuid4().hex}"


def voter_id(stored: Any) -> str:
    """The browser's voter id, or a new one when it has none yet (or something else is stored)."""
    return stored if isinstance(stored, str) and stored.startswith("voter-") else new_voter_id()


def _votes(interactive: bool) -> list[dict[str, Any]]:
    return [gr.update(interactive=interactive) for _ in OUTCOMES]


def make_handlers(client: GatewayClient) -> dict[str, Any]:
    def send(message: str, left: list[dict[str, Any]], right: list[dict[str, Any]],
             battle: Battle | None) -> Iterator[tuple[Any, ...]]:
        if battle is None or battle.voted:
            battle, left, right = new_battle(client), [], []
        if not message.strip():
            yield (left, right, "", battle, HIDDEN, HIDDEN, "", *_votes(False))
            return
        turn = {"role": "user", "content": message}
        histories = ([*plain(left), turn], [*plain(right), turn])
        yield (*histories, "", battle, HIDDEN, HIDDEN, "", *_votes(False))
        for pair in stream_battle(client, battle, histories):
            histories = pair
            yield (*histories, "", battle, HIDDEN, HIDDEN, "", *_votes(False))
        ready = last_id(battle.ids["left"]) is not None and last_id(battle.ids["right"]) is not None
        hint = "Which answer is better? Vote below, or keep talking to both." if ready else \
            "One side failed, so this turn cannot be voted on; try again or start a new battle."
        yield (*histories, "", battle, HIDDEN, HIDDEN, hint, *_votes(ready))

    def vote(choice: str, battle: Battle | None, stored: Any) -> tuple[Any, ...]:
        voter = voter_id(stored)
        if battle is None or battle.voted:
            hint = "Start a battle first: write a message."
            return (battle, gr.update(), gr.update(), hint, *_votes(False), voter)
        try:
            client.send_feedback(vote_payload(battle, choice, voter))
        except GatewayError as exc:
            log.warning("arena: vote not stored (%s)", exc)
            again = exc.status not in REFUSED  # a refusal stays one: no point in clicking again
            return (battle, gr.update(), gr.update(), f"⚠️ Vote not stored: {exc}", *_votes(again), voter)
        battle.voted = True
        done = "Vote stored. The names are revealed above; write a new message to start the next battle."
        return (battle, reveal(battle.left, battle.experiment), reveal(battle.right, battle.experiment),
                done, *_votes(False), voter)

    def reset() -> tuple[Any, ...]:
        return ([], [], "", None, HIDDEN, HIDDEN, "New battle: write a message.", *_votes(False))

    return {"send": send, "vote": vote, "reset": reset}


def build_arena_tab(client: GatewayClient) -> None:
    handlers = make_handlers(client)
    battle = gr.State(None)
    # Not a secret (the id only tells voters apart); stable, so the id survives a gateway restart.
    secret = hashlib.sha256(f"{VOTER_KEY}:{client.api_key}".encode()).hexdigest()[:32]
    voter = gr.BrowserState(None, storage_key=VOTER_KEY, secret=secret)
    gr.Markdown("Two anonymous assistants answer the same message. Vote for the better one; "
                "only then are their names revealed.", elem_classes=["tab-intro"])
    with gr.Row(equal_height=True):
        with gr.Column():
            left = gr.Chatbot(label="Assistant A", height=420, elem_id="arena-left", feedback_options=None)
            left_name = gr.HTML(HIDDEN, elem_id="arena-left-name")
        with gr.Column():
            right = gr.Chatbot(label="Assistant B", height=420, elem_id="arena-right", feedback_options=None)
            right_name = gr.HTML(HIDDEN, elem_id="arena-right-name")
    box = gr.Textbox(placeholder="Write a message to both assistants…", show_label=False,
                     elem_id="arena-input", submit_btn=True)
    with gr.Row():
        buttons = [gr.Button(label, interactive=False, elem_id=f"vote-{key}", variant="secondary")
                   for key, label in (("left", "👈 A is better"), ("right", "👉 B is better"),
                                      ("tie", "🤝 Tie"), ("both_bad", "👎 Both are bad"))]
        reset = gr.Button("🔄 New battle", elem_id="arena-reset", variant="primary")
    status = gr.Markdown("", elem_id="arena-status")
    box.submit(handlers["send"], [box, left, right, battle],
               [left, right, box, battle, left_name, right_name, status, *buttons], api_visibility="private")
    for key, button in zip(OUTCOMES, buttons, strict=True):
        button.click(lambda b, v, k=key: handlers["vote"](k, b, v), [battle, voter],
                     [battle, left_name, right_name, status, *buttons, voter], api_visibility="private")
    reset.click(handlers["reset"], None, [left, right, box, battle, left_name, right_name, status, *buttons],
                api_visibility="private")
