"""How the studio looks beyond Streamlit's theme: text that meets WCAG AA contrast, style cards that are
buttons, the render given the room, and Streamlit's own Stop hidden (the studio's Cancel is the one stop
a designer meets: Stop froze the page mid-render while the job went on on the backend).

Also the two things a page asks the browser to do: scroll the render into view, say times locally.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

INK_MUTED = "#4a4d57"  # 8.3:1 on white, 7.3:1 on the sidebar's #f0f2f6 (Streamlit's grey is 3.6:1)

CSS = f"""
<style>
[data-testid="stStatusWidget"] {{ display: none !important; }}
section[data-testid="stSidebar"] {{ width: 14rem !important; min-width: 14rem !important; }}
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p,
[data-testid="stImageCaption"], [data-testid="stWidgetLabel"] p,
[data-testid="stMarkdownContainer"] small, .stRadio [data-testid="stCaptionContainer"],
[data-testid="stTooltipHoverTarget"] svg, [data-testid="stFileUploaderDropzoneInstructions"] span,
[data-testid="stFileUploaderDropzoneInstructions"] small {{
  color: {INK_MUTED} !important; opacity: 1 !important; }}
button[data-selected="true"] p {{ color: #a8000f !important; }}
[class*="st-key-card_"] {{ position: relative; }}
[class*="st-key-card_"] .stElementContainer:has(.stButton) {{ position: static; }}
[class*="st-key-card_"] .stButton button::after {{ content: ""; position: absolute; inset: 0; }}
[class*="st-key-card_"]:hover {{ box-shadow: 0 0 0 2px #b08440; border-radius: 0.5rem; }}
.st-key-render_panel [data-testid="stImage"] img {{ max-height: 78vh; object-fit: contain; }}
.studio-fallback {{ border-radius: 0.5rem; padding: 0.9rem; min-height: 9.5rem; }}
.studio-fallback .swatches {{ display: flex; gap: 0.3rem; margin-bottom: 0.6rem; }}
.studio-fallback .swatches span {{ width: 1.6rem; height: 1.6rem; border-radius: 50%;
  border: 1px solid rgba(0,0,0,0.25); display: inline-block; }}
.studio-fallback p {{ margin: 0.2rem 0; font-size: 0.85rem; line-height: 1.3; }}
</style>
"""


def apply() -> None:
    st.html(CSS)


def scroll_into_view(key: str) -> None:
    """Bring the element with this key to the top of the window (a new id each time: the script runs)."""
    nonce = uuid.uuid4().hex
    st.html(
        f"<script data-nonce='{nonce}'>"
        f"(document.querySelector('.st-key-{key}')||{{scrollIntoView(){{}}}})"
        ".scrollIntoView({block: 'start', behavior: 'instant'});</script>",
        unsafe_allow_javascript=True,
    )


def _zone() -> tuple[timezone | ZoneInfo, str]:
    name = st.context.timezone
    if name:
        try:
            return ZoneInfo(name), ""
        except (ZoneInfoNotFoundError, ValueError):
            pass
    offset = st.context.timezone_offset  # minutes *behind* UTC, as the browser's getTimezoneOffset()
    if offset is not None:
        return timezone(-timedelta(minutes=int(offset))), ""
    return UTC, " UTC"


def local_time(value: str | datetime | None) -> str:
    """A backend time (UTC) as the designer's wall clock: '2026-12-05 10:04'."""
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    zone, suffix = _zone()
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") + suffix
