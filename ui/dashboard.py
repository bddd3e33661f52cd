"""Dashboard tab: per experiment and arm counts, ratings, win rates, Bradley-Terry (plain and with
reply-length control), reply lengths, blend histogram, latency, and each pair's anytime-valid confidence
sequence with its decision and the sample-ratio check.

Reads `/v1/experiments` and `/v1/experiments/{name}/results`; every field is optional, a missing one shows
as an empty plot or a dash, never an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import gradio as gr
from matplotlib.figure import Figure

from ui.client import GatewayClient, GatewayError
from ui.plots import histogram_plot, sequences_plot, strengths_plot, win_matrix_plot

log = logging.getLogger("empathy.ui")
TABLE_HEADERS = ["arm", "model", "traffic", "users", "completions", "👍 votes", "👍 share (95% CI)",
                 "win rate (95% CI)", "Elo (95% CI)", "Elo, length-controlled (95% CI)", "reply tokens",
                 "latency p50 ms", "TTFT p50 ms"]


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if isinstance(value, int | float) else "–"


def _with_ci(stat: Any, key: str, fmt: str = "{:.0%}") -> str:
    if not isinstance(stat, dict) or stat.get(key) is None:
        return "–"
    if stat.get("low") is None or stat.get("high") is None:
        return _num(stat[key], fmt)
    return f"{_num(stat[key], fmt)} ({_num(stat['low'], fmt)}–{_num(stat['high'], fmt)})"


def _arms(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    arms = results.get("arms")
    if isinstance(arms, dict):
        return [{"name": k, **(v if isinstance(v, dict) else {})} for k, v in arms.items()]
    return [a for a in arms or [] if isinstance(a, dict)]


def arm_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """One table row per arm from whatever per-arm fields the gateway reports."""
    rows = []
    for arm in _arms(results):
        thumbs = _first(arm, "thumbs", "rating", "ratings") or {}
        win = arm.get("win_rate") or {}
        win = win if isinstance(win, dict) and win.get("games") else {}
        rows.append([str(arm.get("name", "?")), str(arm.get("model", "–")), _num(arm.get("weight"), "{:g}"),
                     str(_first(arm, "assigned_users", "users", "assigned") or 0),
                     str(_first(arm, "completions", "count") or 0),
                     str(thumbs.get("n", 0) if isinstance(thumbs, dict) else 0),
                     _with_ci(thumbs, "mean"), _with_ci(win, "win_rate"),
                     _with_ci(arm.get("bradley_terry") if win else None, "rating", "{:.0f}"),
                     _with_ci(arm.get("bradley_terry_lc"), "rating", "{:.0f}"),
                     _num(arm.get("reply_tokens_mean"), "{:.0f}"),
                     _num(_first(arm, "latency_ms_p50", "p50_ms"), "{:.0f}"),
                     _num(_first(arm, "ttft_ms_p50", "ttft_p50_ms"), "{:.0f}")])
    return rows


def bt_ratings(results: Mapping[str, Any], key: str = "bradley_terry") -> dict[str, dict[str, float]]:
    """Per-arm `bradley_terry` (or `key`, e.g. `bradley_terry_lc`) {rating, low, high}; only arms that took
    part in a vote."""
    out = {}
    for arm in _arms(results):
        bt, win = arm.get(key), arm.get("win_rate") or {}
        if isinstance(bt, dict) and bt.get("rating") is not None and (not isinstance(win, dict)
                                                                     or win.get("games", 1)):
            out[str(arm.get("name"))] = bt
    return out


def win_matrix(results: Mapping[str, Any]) -> tuple[list[str], list[list[float | None]]]:
    """P(row beats column) from a `pairwise` list of {a, b, a_win_rate} rows (or a ready matrix)."""
    ready = results.get("win_matrix")
    if isinstance(ready, dict) and "players" in ready and "matrix" in ready:
        return list(ready["players"]), ready["matrix"]
    rows = [r for r in results.get("pairwise") or [] if isinstance(r, dict) and "a" in r and "b" in r]
    players = sorted({str(r["a"]) for r in rows} | {str(r["b"]) for r in rows})
    index = {p: i for i, p in enumerate(players)}
    matrix: list[list[float | None]] = [[None] * len(players) for _ in players]
    for r in rows:
        rate = _first(r, "a_win_rate", "win_rate")
        if isinstance(rate, int | float):
            matrix[index[str(r["a"])]][index[str(r["b"])]] = float(rate)
            matrix[index[str(r["b"])]][index[str(r["a"])]] = 1.0 - float(rate)
    return players, matrix


def blend_counts(metrics: str) -> dict[str, float]:
    """Router weight histogram from the gateway's Prometheus `empathy_router_weight` buckets."""
    from prometheus_client.parser import text_string_to_metric_families

    cumulative: dict[float, float] = {}
    try:
        for family in text_string_to_metric_families(metrics):
            for sample in family.samples:
                if sample.name == "empathy_router_weight_bucket" and sample.labels.get("le") != "+Inf":
                    le = float(sample.labels["le"])
                    cumulative[le] = cumulative.get(le, 0.0) + float(sample.value)
    except ValueError as exc:
        log.warning("dashboard: the gateway's /metrics is unreadable (%s); no router histogram", exc)
        return {}
    counts, previous = {}, 0.0
    for le in sorted(cumulative):
        counts[f"{le:g}"] = cumulative[le] - previous
        previous = cumulative[le]
    return counts if any(counts.values()) else {}


def srm_line(results: Mapping[str, Any]) -> str:
    """The sample-ratio check in words ('' when the gateway reports none)."""
    srm = results.get("srm")
    if not isinstance(srm, dict) or srm.get("p_value") is None:
        return ""
    if srm.get("mismatch"):
        return (f"⚠️ **Sample-ratio mismatch** (p = {srm['p_value']:.1e}): users do not split as the weights "
                "say, so the arms' results are not comparable; check assignment and logging.")
    return f"Sample ratio OK (p = {srm['p_value']:.2f})."


def position_line(results: Mapping[str, Any]) -> str:
    """How often the left (first-shown) answer wins, from the gateway's `position` ('' without votes)."""
    pos = results.get("position")
    if not isinstance(pos, dict) or pos.get("left_win_rate") is None or pos.get("low") is None:
        return ""
    verdict = "⚠️ position bias" if pos.get("biased") else "no position bias shown"
    return (f"Left answer wins {pos['left_win_rate']:.0%} of {pos.get('votes', 0)} votes (sequence "
            f"{pos['low']:.0%}–{pos['high']:.0%}): {verdict}.")


def length_line(results: Mapping[str, Any]) -> str:
    """The reply-length control in words ('' before a vote with reply lengths)."""
    lc = results.get("length_control")
    if not isinstance(lc, dict) or lc.get("length_coef") is None:
        return ""
    controlled = bt_ratings(results, "bradley_terry_lc")
    elo = ", ".join(f"{name} {r['rating']:.0f}" for name, r in controlled.items())
    return (f"Reply length ({lc.get('votes', 0)} votes): {lc.get('length_effect')} (coefficient "
            f"{lc['length_coef']:+.2f} ± {1.96 * lc['length_coef_se']:.2f} per SD of the length difference); "
            f"Elo at equal length: {elo or '–'}.")


def decision_lines(results: Mapping[str, Any]) -> list[str]:
    """One line per pair and metric with the anytime-valid decision and interval."""
    lines = []
    for p in results.get("pairs") or []:
        if isinstance(p, dict) and p.get("low") is not None and p.get("high") is not None:
            verdict = p.get("decision", "not yet")
            lines.append(f"- {p.get('a')} vs {p.get('b')} · {p.get('metric')}: **{verdict}** "
                         f"(sequence {p['low']:.2f}–{p['high']:.2f}, n = {p.get('n', 0)})")
    return lines


def summary(name: str, results: Mapping[str, Any]) -> str:
    votes = results.get("votes")
    votes = len(votes) if isinstance(votes, list) else votes
    state = "active" if results.get("active", True) else "inactive"
    arms = ", ".join(f"`{a.get('name')}`" for a in _arms(results)) or "–"
    head = f"### {name} ({state})\nArms: {arms} · pairwise votes: **{votes if votes is not None else 0}**"
    extra = [line for line in (srm_line(results), position_line(results), length_line(results),
                               *decision_lines(results)) if line]
    return "\n\n".join([head, "\n".join(extra)]) if extra else head


def experiment_names(client: GatewayClient) -> list[str]:
    try:
        return [str(e.get("name")) for e in client.experiments()]
    except GatewayError as exc:
        log.warning("dashboard: experiments unavailable (%s)", exc)
        return []


def render(client: GatewayClient, name: str | None) -> tuple[str, list[list[str]], Figure, Figure, Figure,
                                                             Figure]:
    if not name:
        message = ("No experiment is defined yet. Add one to the gateway's experiments file; the arena "
                   "still compares random pairs of models meanwhile.")
        results: dict[str, Any] = {}
    else:
        try:
            results = client.results(name)
            message = summary(name, results)
        except GatewayError as exc:
            log.warning("dashboard: results of %r unavailable (%s)", name, exc)
            results, message = {}, f"⚠️ {exc}"
    players, matrix = win_matrix(results)
    return (message, arm_rows(results),
            strengths_plot(bt_ratings(results), controlled=bt_ratings(results, "bradley_terry_lc")),
            win_matrix_plot(players, matrix),
            histogram_plot(blend_counts(client.metrics_text()), "Router blend weights (all routed requests)",
                           "share of sensibility (bucket upper edge)"),
            sequences_plot(results.get("pairs") or [], bool((results.get("srm") or {}).get("mismatch"))))


def build_dashboard_tab(client: GatewayClient) -> tuple[Callable[[str | None], tuple[Any, ...]],
                                                        list[Any], gr.Dropdown]:
    """Render the tab; return its reload function, that function's outputs and its input (for tab select)."""
    with gr.Row(equal_height=True):
        choice = gr.Dropdown([], label="Experiment", elem_id="dash-experiment", scale=3,
                             allow_custom_value=True)
        refresh = gr.Button("↻ Refresh", elem_id="dash-refresh", scale=1, variant="primary")
    message = gr.Markdown("", elem_id="dash-summary")
    table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, elem_id="dash-table",
                         label="Arms")
    with gr.Row():
        bt_plot = gr.Plot(label="Bradley-Terry", elem_id="dash-bt")
        matrix_plot = gr.Plot(label="Win rates", elem_id="dash-matrix")
    hist_plot = gr.Plot(label="Router weights", elem_id="dash-hist")
    seq_plot = gr.Plot(label="Confidence sequences (valid at every look)", elem_id="dash-sequences")
    outputs = [message, table, bt_plot, matrix_plot, hist_plot, seq_plot]

    def reload(name: str | None) -> tuple[Any, ...]:
        names = experiment_names(client)
        name = name if name in names else (names[0] if names else None)
        return (gr.update(choices=names, value=name), *render(client, name))

    refresh.click(reload, [choice], [choice, *outputs], api_visibility="private")
    choice.input(lambda n: render(client, n), [choice], outputs, api_visibility="private")
    return reload, [choice, *outputs], choice
