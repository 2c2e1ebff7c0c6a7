"""The studio: describe a room or start from a sketch, pick a style, render, watch it, use the results."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from frontend import presets, state
from frontend.api_client import ApiClient, ApiError
from frontend.components import comparison, escape, follow, image_bytes, results, settings_text, show_outcome

CANVAS_W, CANVAS_H = 480, 320
SKETCH_TYPES = ["png", "jpg", "jpeg", "webp"]


def _apply_preset() -> None:
    chosen = presets.preset(st.session_state["w_preset"])
    if chosen is not None:
        st.session_state["w_prompt"] = chosen.prompt
        st.session_state["w_negative"] = chosen.negative


def _apply_size() -> None:
    size = presets.SIZE_PRESETS.get(st.session_state["w_size"])
    if size is not None:
        st.session_state["w_width"], st.session_state["w_height"] = size


def _size_edited() -> None:
    ss = st.session_state
    ss["w_size"] = presets.size_preset_for(ss["w_width"], ss["w_height"])


def job_body() -> dict[str, Any]:
    """The POST /api/jobs body from the form."""
    ss = st.session_state
    body: dict[str, Any] = {
        "kind": form_kind(),
        "prompt": ss["w_prompt"],
        "negative_prompt": ss["w_negative"],
        "style": ss["w_style"],
        "width": int(ss["w_width"]),
        "height": int(ss["w_height"]),
        "steps": int(ss["w_steps"]),
        "cfg": float(ss["w_cfg"]),
        "sampler": ss["w_sampler"],
        "scheduler": ss["w_scheduler"],
        "seed": None if ss["w_random_seed"] else int(ss["w_seed"]),
        "num_images": int(ss["w_num_images"]),
    }
    if body["kind"] == "sketch":
        body["upload_id"] = (ss["upload"] or {}).get("id")
        body["sketch_strength"] = float(ss["w_sketch_strength"])
    return body


def _submit(client: ApiClient) -> None:
    body = job_body()
    if body["kind"] == "sketch" and not body.get("upload_id"):
        st.session_state["notice"] = ("error", "Upload or draw a sketch first.")
        return
    try:
        job = client.submit_job(body, str(uuid.uuid4()))
    except ApiError as err:
        st.session_state["notice"] = ("error", err.message)
        return
    state.show_job(job["id"])


def _request_drawing() -> None:
    st.session_state["drawing_requested"] = True


def _clear_sketch() -> None:
    st.session_state["upload"] = None
    st.session_state["upload_source"] = None


def _store_sketch(client: ApiClient, data: bytes, name: str, content_type: str, source: str) -> None:
    try:
        upload = client.upload_sketch(data, name, content_type)
    except ApiError as err:
        st.error(escape(err.message))
        return
    st.session_state["upload"] = upload
    st.session_state["upload_source"] = source


def sketch_input(client: ApiClient) -> None:
    source = st.radio("Sketch from", ["Upload a photo or scan", "Draw it here"], horizontal=True, key="w_src")
    if source.startswith("Upload"):
        file = st.file_uploader(
            "A hand-drawn plan or perspective (PNG, JPEG or WebP)", type=SKETCH_TYPES, key="w_sketch_file"
        )
        if file is not None:
            data = file.getvalue()
            fingerprint = "file:" + hashlib.sha256(data).hexdigest()
            if st.session_state["upload_source"] != fingerprint:
                _store_sketch(client, data, file.name, file.type or "application/octet-stream", fingerprint)
    else:
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


def sketch_preview(client: ApiClient, upload: dict[str, Any]) -> None:
    width, height = int(st.session_state["w_width"]), int(st.session_state["w_height"])
    try:
        original = image_bytes(client, client.token, upload["url"])
        prepared = client.binary(upload["preview_url"], width=width, height=height)
    except ApiError as err:
        st.warning(escape(err.message))
        return
    c1, c2 = st.columns(2)
    c1.image(original, caption=f"Your sketch · {upload['width']}×{upload['height']}")
    how = "dark lines on light paper, inverted" if upload["dark_lines"] else "light lines, used as they are"
    c2.image(prepared, caption=f"As ComfyUI gets it · {width}×{height} · {how}")
    st.button("Remove sketch", key="clear_sketch", on_click=_clear_sketch, icon=":material/delete:")


def form_kind() -> str:
    return "sketch" if st.session_state["w_mode"] == state.MODES[1] else "text"


def unavailable_reason(style: dict[str, Any], kind: str) -> str | None:
    """Why no server can render `kind` jobs in this style now (None: it can, or nothing says otherwise)."""
    verdict = (style.get("kinds") or {}).get(kind) or {}
    if verdict.get("available", True):
        return None
    return str(verdict.get("reason") or "No server has this style's files.")


def usable_ids(styles: list[dict[str, Any]]) -> dict[str, list[str]]:
    """job kind -> the styles a render of that kind can use now."""
    return {k: [s["id"] for s in styles if not unavailable_reason(s, k)] for k in ("text", "sketch")}


def style_card(client: ApiClient, col: Any, style: dict[str, Any], reason: str | None) -> None:
    try:
        col.image(image_bytes(client, client.token, style["preview_url"]), width="stretch")
    except ApiError:
        col.caption("no preview yet")
    if reason:
        col.caption(f":material/block: **{escape(style['name'])} is unavailable.** {escape(reason)}")


def style_picker(client: ApiClient, styles: list[dict[str, Any]]) -> None:
    """A card per style; one whose files no server of this kind has shows why and cannot be picked."""
    kind = form_kind()
    reasons = {s["id"]: unavailable_reason(s, kind) for s in styles}
    usable = [s for s in styles if not reasons[s["id"]]]
    ids = [s["id"] for s in usable]
    st.markdown("**Style**")
    for col, style in zip(st.columns(len(styles)), styles, strict=True):
        style_card(client, col, style, reasons[style["id"]])
    if not usable:
        st.warning(f"No style can render {kind} jobs now; the servers lack their model files.")
        return
    if st.session_state["w_style"] not in ids:
        st.session_state["w_style"] = "indochine" if "indochine" in ids else ids[0]
    by_id = {s["id"]: s for s in usable}
    st.radio(
        "Style",
        ids,
        key="w_style",
        horizontal=True,
        label_visibility="collapsed",
        format_func=lambda i: by_id[i]["name"],
        captions=[s["description"] for s in usable],
    )


def advanced() -> None:
    with st.expander("Advanced settings"):
        st.selectbox(
            "Size", [*presets.SIZE_PRESETS, presets.CUSTOM_SIZE], key="w_size", on_change=_apply_size
        )
        c1, c2 = st.columns(2)
        lo, hi = presets.SIDE_MIN, presets.SIDE_MAX
        c1.number_input("Width (px)", lo, hi, step=8, key="w_width", on_change=_size_edited)
        c2.number_input("Height (px)", lo, hi, step=8, key="w_height", on_change=_size_edited)
        c1, c2 = st.columns(2)
        c1.slider("Steps", 1, 100, key="w_steps", help="More steps: finer detail, slower")
        c2.slider("Guidance", 1.0, 20.0, step=0.5, key="w_cfg", help="How literally the prompt is followed")
        c1, c2 = st.columns(2)
        c1.selectbox("Sampler", presets.SAMPLERS, key="w_sampler")
        c2.selectbox("Scheduler", presets.SCHEDULERS, key="w_scheduler")
        c1, c2 = st.columns(2)
        c1.checkbox("Random seed", key="w_random_seed")
        c1.number_input(
            "Seed", 0, 2**53 - 1, step=1, key="w_seed", disabled=st.session_state["w_random_seed"]
        )
        c2.slider("Images", 1, 4, key="w_num_images")


def compare_section(client: ApiClient, styles: list[dict[str, Any]]) -> None:
    head = st.container(horizontal=True, vertical_alignment="center")
    head.subheader("Compare styles")
    head.button("Close", key="close_compare", on_click=state.close_comparison, icon=":material/close:")
    comparison(client, st.session_state["compare_ids"], {s["id"]: s["name"] for s in styles})
    st.divider()


def current_render(client: ApiClient, styles: list[dict[str, Any]]) -> None:
    names = {s["id"]: s["name"] for s in styles}
    job_id = st.session_state["job_id"]
    if not job_id:
        st.info("Your render appears here. Describe a room or start from a sketch, then press Render.")
        return
    try:
        job = client.job(job_id)
    except ApiError as err:
        if err.status == 404:
            state.show_job(None)
        st.warning(escape(err.message))
        return
    st.subheader(f"{names.get(job['style'], job['style'])} · {job['kind']} render")
    st.text(job["params"].get("prompt", ""))
    job = follow(client, job)
    show_outcome(job)
    results(client, job)
    with st.expander("Exact settings"):
        st.text(settings_text(job["params"]))


def page(client: ApiClient) -> None:
    styles = client.styles()
    st.session_state["style_ids"] = usable_ids(styles)
    notice = st.session_state.pop("notice", None)
    if notice:
        getattr(st, notice[0])(escape(notice[1]))
    if st.session_state["compare_ids"]:
        compare_section(client, styles)
    left, right = st.columns([6, 5], gap="large")
    with left:
        st.radio("Start", state.MODES, key="w_mode", horizontal=True, label_visibility="collapsed")
        if st.session_state["w_mode"] == state.MODES[1]:
            sketch_input(client)
        st.selectbox(
            "Room preset",
            [p.name for p in presets.ROOM_PRESETS],
            key="w_preset",
            on_change=_apply_preset,
            help="Fills the prompt and the negative prompt with a good start",
        )
        st.text_area("Describe the room", key="w_prompt", height=110, max_chars=2000)
        st.text_area("Keep out of the render (negative prompt)", key="w_negative", height=68, max_chars=2000)
        style_picker(client, styles)
        advanced()
        st.button(
            "Render", type="primary", key="render", on_click=_submit, args=(client,), icon=":material/brush:"
        )
    with right, st.empty().container():  # one slot: a new render replaces the old one at once
        current_render(client, styles)


if __name__ == "__main__":
    from frontend.context import client

    page(client())
