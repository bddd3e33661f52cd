"""The Gradio app: Chat, Arena, Experts and Dashboard tabs over one gateway client.

`build_ui` only needs the gateway's URL and an API key: the app is an ordinary client of the API, mounted
on the gateway by `serve` (`mount_ui` also applies the theme and CSS, which Gradio 6 takes at mount time).
"""

from __future__ import annotations

import gradio as gr
from fastapi import FastAPI

from ui.arena import build_arena_tab
from ui.chat import build_chat_tab
from ui.client import GatewayClient
from ui.dashboard import build_dashboard_tab
from ui.experts import build_experts_tab
from ui.theme import CSS, style_tag, theme

TITLE = "Empathy Router"
SUBTITLE = ("An empathetic chatbot that blends a *sensibility* expert and a *rationality* expert per "
            "conversation, after the Efficient-Empathy paper.")


def build_ui(api_base_url: str, api_key: str | None = None, max_tokens: int | None = None) -> gr.Blocks:
    """The app for the gateway at `api_base_url`; `max_tokens` defaults to the `ui_max_tokens` setting."""
    if max_tokens is None:
        from empathy.settings import get_settings

        max_tokens = get_settings().ui_max_tokens
    client = GatewayClient(api_base_url, api_key, max_tokens=max_tokens)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.HTML(style_tag(), padding=False)
        gr.Markdown(f"# 💬 {TITLE}\n{SUBTITLE}", elem_id="app-title")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat", elem_id="tab-chat"):
                build_chat_tab(client)
            with gr.Tab("Arena", id="arena", elem_id="tab-arena"):
                build_arena_tab(client)
            with gr.Tab("Experts", id="experts", elem_id="tab-experts"):
                picks, refresh_picks = build_experts_tab(client)
            with gr.Tab("Dashboard", id="dashboard", elem_id="tab-dashboard") as dash_tab:
                reload, outputs, choice = build_dashboard_tab(client)
        demo.load(refresh_picks, None, list(picks), api_visibility="private")
        dash_tab.select(reload, [choice], outputs, api_visibility="private")
    return demo


def mount_ui(app: FastAPI, api_base_url: str, api_key: str | None = None, path: str = "/",
             max_tokens: int | None = None) -> FastAPI:
    """Mount the UI on the gateway's app with the theme and CSS."""
    return gr.mount_gradio_app(app, build_ui(api_base_url, api_key, max_tokens), path=path, theme=theme(),
                               css=CSS, footer_links=["api"])
