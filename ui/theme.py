"""Look of the app: a soft warm theme and a little CSS (captions, arena names, status lines)."""

from __future__ import annotations

import gradio as gr

CSS = """
.gradio-container { max-width: 1180px !important; margin: 0 auto !important; }
#app-title h1 { margin-bottom: 0; font-size: 1.7rem; }
#app-title p { margin-top: 0.2rem; color: var(--body-text-color-subdued); }
.empathy-caption { color: var(--body-text-color-subdued); font-size: 0.78em; letter-spacing: 0.01em; }
.tab-intro p { color: var(--body-text-color-subdued); margin: 0.2rem 0 0.6rem; }
.arena-name { text-align: center; padding: 0.45rem; border-radius: 10px; font-weight: 600;
  background: var(--background-fill-secondary); color: var(--body-text-color-subdued); }
.arena-name.revealed { background: var(--color-accent-soft); color: var(--body-text-color); }
#chat-status, #arena-status { min-height: 1.6rem; color: var(--body-text-color-subdued); }
footer { display: none !important; }
"""


def style_tag() -> str:
    """The CSS as a `<style>` element: it survives a mount that sets no `css` (mount replaces blocks.css)."""
    return f"<style>{CSS}</style>"


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="orange", secondary_hue="rose", neutral_hue="slate",
                          font=[gr.themes.GoogleFont("Inter"), "ui-sans-serif", "system-ui", "sans-serif"])
