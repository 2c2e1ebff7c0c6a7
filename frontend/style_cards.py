"""The style picker: one card per style, and the card is the control (its whole face is one button).

A card shows the style's rendered preview (`make previews` makes them once LoRAs are published) or,
until then, a designed fallback: the style's palette, its materials and one line of description.
Every image says what it shows.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable
from typing import Any

import streamlit as st

from frontend.api_client import ApiClient, ApiError
from frontend.components import escape, image_bytes

# Colours of the known styles (as loras/render_previews.py draws them); others get colours from their id.
PALETTES = {
    "indochine": ("#2e4030", "#b08440", "#f0e4c8", "#6b3f26"),  # tropical green, brass, cream, lacquer
    "minimalist": ("#ece8e0", "#c4b094", "#ffffff", "#3c3c3c"),  # plaster, white oak, linen, charcoal
    "none": ("#787c80", "#a8acb0", "#d8dadc", "#fafafa"),  # neutral greys
}


def palette(style_id: str) -> tuple[str, ...]:
    if style_id in PALETTES:
        return PALETTES[style_id]
    digest = hashlib.sha256(style_id.encode()).digest()
    return tuple(f"#{digest[i]:02x}{digest[i + 1]:02x}{digest[i + 2]:02x}" for i in range(0, 12, 3))


def materials(description: str) -> tuple[str, str]:
    """(what the style is, its materials) from a description like 'Calm spaces: oak, linen.'"""
    head, _, tail = description.partition(":")
    if not tail:
        return description, ""
    return head.strip() + ".", tail.strip().rstrip(".")


def fallback_html(style: dict[str, Any]) -> str:
    line, stuff = materials(style["description"])
    dots = "".join(f'<span style="background:{c}"></span>' for c in palette(style["id"]))
    name = html.escape(style["name"])
    described = html.escape(f"{style['name']} style palette: {stuff or line}")
    return (
        f'<div class="studio-fallback" style="background:#faf8f4;border:1px solid {palette(style["id"])[1]}">'
        f'<div class="swatches" role="img" aria-label="{described}">{dots}</div>'
        f"<p><strong>{name}</strong></p>"
        + (f'<p style="color:#3a3a3a">{html.escape(stuff)}</p>' if stuff else "")
        + f'<p style="color:#4a4d57">{html.escape(line)}</p></div>'
    )


def preview(client: ApiClient, style: dict[str, Any]) -> bytes | None:
    try:
        return image_bytes(client, client.token, style["preview_url"])
    except ApiError:
        return None  # preview_missing: no rendered preview yet


def card_face(client: ApiClient, style: dict[str, Any]) -> None:
    """The preview (with its alt text), or the designed fallback."""
    data = preview(client, style)
    if data is None:
        st.html(fallback_html(style))
    else:
        alt = f"A living room rendered in the {style['name']} style: {style['description']}"
        st.image(data, width="stretch", alt=alt)


def cards(
    client: ApiClient,
    styles: list[dict[str, Any]],
    chosen: str | None,
    reasons: dict[str, str | None],
    on_pick: Callable[[str], None],
    prefix: str = "style",
) -> None:
    """A row of cards; a click anywhere on a usable card calls on_pick(style id). One that no server can
    render shows why and cannot be picked."""
    for col, style in zip(st.columns(len(styles)), styles, strict=True):
        reason = reasons.get(style["id"])
        with col, st.container(key=f"card_{prefix}_{style['id']}", border=True):
            card_face(client, style)
            picked = style["id"] == chosen
            st.button(
                f"{style['name']} ✓" if picked else style["name"],
                key=f"pick_{prefix}_{style['id']}",
                type="primary" if picked else "secondary",
                disabled=bool(reason),
                width="stretch",
                on_click=on_pick,
                args=(style["id"],),
                help=style["description"],
            )
            if reason:
                st.caption(f":material/block: **{escape(style['name'])} is unavailable.** {escape(reason)}")
