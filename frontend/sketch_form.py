"""The sketch a sketch render starts from: uploaded or drawn on the page, previewed as ComfyUI gets it.

A new sketch sets the render size to its own shape (the nearest size the studio renders), and says so:
a 4:3 sketch is no longer cropped to 3:2 without notice.
"""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from frontend import presets, wording
from frontend.api_client import ApiClient, ApiError
from frontend.components import escape, image_bytes

CANVAS_W, CANVAS_H = 480, 320
SKETCH_TYPES = ["png", "jpg", "jpeg", "webp"]


def _request_drawing() -> None:
    st.session_state["drawing_requested"] = True


def _clear_sketch() -> None:
    st.session_state["upload"] = None
    st.session_state["upload_source"] = None


def fit_size_to(upload: dict[str, Any]) -> None:
    """The render size follows the sketch's shape (before the size widgets are drawn in this run)."""
    ss = st.session_state
    width, height = presets.size_for_aspect(int(upload["width"]), int(upload["height"]))
    if (ss["w_width"], ss["w_height"]) == (width, height):
        return
    ss["w_width"], ss["w_height"] = width, height
    ss["w_size"] = presets.size_preset_for(width, height)
    ss["size_notice"] = (
        f"Render size set to {width} × {height} px to match your sketch "
        f"({upload['width']} × {upload['height']}); change it under Advanced settings."
    )


def _store_sketch(client: ApiClient, data: bytes, name: str, content_type: str, source: str) -> None:
    try:
        upload = client.upload_sketch(data, name, content_type)
    except ApiError as err:
        st.error(escape(wording.say(err)))
        return
    st.session_state["upload"] = upload
    st.session_state["upload_source"] = source
    fit_size_to(upload)


def sketch_input(client: ApiClient) -> None:
    source = st.radio("Sketch from", ["Upload a photo or scan", "Draw it here"], horizontal=True, key="w_src")
    if source.startswith("Upload"):
        file = st.file_uploader(
            f"A hand-drawn plan or perspective ({wording.UPLOAD_LIMITS})",
            type=SKETCH_TYPES,
            key="w_sketch_file",
            max_upload_size=wording.UPLOAD_MAX_MB,
        )
        if file is not None:
            data = file.getvalue()
            fingerprint = "file:" + hashlib.sha256(data).hexdigest()
            if st.session_state["upload_source"] != fingerprint:
                _store_sketch(client, data, file.name, file.type or "application/octet-stream", fingerprint)
    else:
        draw(client)
    upload = st.session_state["upload"]
    if upload:
        sketch_preview(client, upload)
    st.slider(
        "How strictly the render follows the sketch",
        0.0,
        2.0,
        step=0.05,
        key="w_sketch_strength",
        help="0: ignore it · 0.9: follow it closely (default) · above 1.2: lines win over realism",
    )


def draw(client: ApiClient) -> None:
    c1, c2 = st.columns(2)
    mode = c1.selectbox("Tool", ["freedraw", "line", "rect", "polygon"], key="w_canvas_tool")
    width = c2.slider("Line width", 1, 12, 3, key="w_canvas_width")
    drawing = st_canvas(
        stroke_width=width,
        stroke_color="#111111",
        background_color="#ffffff",
        height=CANVAS_H,
        width=CANVAS_W,
        drawing_mode=mode,
        fill_color="rgba(0, 0, 0, 0)",  # outlines only: ControlNet wants lines
        return_image_data=True,
        key="sketch_canvas",
    )
    st.button("Use this drawing", key="use_drawing", icon=":material/check:", on_click=_request_drawing)
    if st.session_state.get("drawing_requested"):
        # The canvas sends its strokes a moment after the mouse is released: a quick click can
        # arrive first, so the request waits for the drawing instead of being lost.
        objects = (drawing.json_data or {}).get("objects") or []
        if not objects or not drawing.image_bytes:
            st.warning("Draw something on the canvas first.")
        else:
            st.session_state["drawing_requested"] = False
            source_id = "canvas:" + hashlib.sha256(drawing.image_bytes).hexdigest()
            _store_sketch(client, drawing.image_bytes, "drawing.png", "image/png", source_id)


def sketch_preview(client: ApiClient, upload: dict[str, Any]) -> None:
    width, height = int(st.session_state["w_width"]), int(st.session_state["w_height"])
    if wording.side_problem(width) or wording.side_problem(height):
        width, height = presets.size_for_aspect(int(upload["width"]), int(upload["height"]))
    try:
        original = image_bytes(client, client.token, upload["url"])
        prepared = client.binary(upload["preview_url"], width=width, height=height)
    except ApiError as err:
        st.warning(escape(wording.say(err)))
        return
    if notice := st.session_state.pop("size_notice", None):
        st.info(notice, icon=":material/aspect_ratio:")
    c1, c2 = st.columns(2)
    c1.image(
        original,
        caption=f"Your sketch · {upload['width']}×{upload['height']}",
        alt=f"Your sketch, {upload['width']} by {upload['height']} pixels",
    )
    how = "dark lines on light paper, inverted" if upload["dark_lines"] else "light lines, used as they are"
    c2.image(
        prepared,
        caption=f"As the render sees it · {width}×{height} · {how}",
        alt=f"The sketch as the render uses it: {width} by {height} pixels, {how}",
    )
    st.button("Remove sketch", key="clear_sketch", on_click=_clear_sketch, icon=":material/delete:")
