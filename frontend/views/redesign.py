"""Redesign a photo: upload a room photo (or open a render from the gallery), restyle it, stage it or edit a
region; paint the mask on the photo itself; the result beside the photo with a before/after slider."""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import streamlit as st
from PIL import Image
from streamlit_drawable_canvas import st_canvas

from frontend.api_client import ApiClient, ApiError
from frontend.before_after import before_after, overlay
from frontend.components import escape, follow, image_bytes
from frontend.redesign_mask import STROKE, mask_png

MODES = {"Restyle": "restyle", "Stage an empty room": "stage", "Edit or clear a region": "edit"}
MASK_INPUT = {"restyle": "keep_mask", "stage": "floor_mask", "edit": "mask"}
MASK_HELP = {
    "restyle": "Optional: paint what must stay exactly as it is (a window, the fireplace).",
    "stage": "Paint the floor: furniture goes only there; walls and windows stay untouched.",
    "edit": "Paint the region to change or clear; everything else stays untouched.",
}
PHOTO_TYPES = ["png", "jpg", "jpeg", "webp", "heic", "heif"]
CANVAS_W = 720


def photo_input(client: ApiClient) -> dict[str, Any] | None:
    file = st.file_uploader("A photo of the room (PNG, JPEG, WebP or HEIC)", type=PHOTO_TYPES, key="rd_file")
    if file is not None:
        data = file.getvalue()
        fingerprint = hashlib.sha256(data).hexdigest()
        if st.session_state.get("rd_source") != fingerprint:
            try:
                st.session_state["rd_photo"] = client.upload_as(
                    "photo", data, file.name, file.type or "application/octet-stream"
                )
                st.session_state["rd_source"] = fingerprint
                st.session_state.pop("rd_job", None)
                st.session_state.pop("rd_loaded", None)
            except ApiError as err:
                st.error(escape(err.message))
    photo: dict[str, Any] | None = st.session_state.get("rd_photo")
    return photo


def paint_mask(client: ApiClient, photo: dict[str, Any], png: bytes, mode: str) -> dict[str, Any] | None:
    """The canvas over the photo; the painted mask uploaded (role mask) when the designer uses it."""
    st.caption(MASK_HELP[mode])
    height = round(photo["height"] * CANVAS_W / photo["width"])
    brush = st.slider("Brush", 4, 80, 28, key="rd_brush")
    tool = st.selectbox("Tool", ["freedraw", "rect", "polygon"], key="rd_tool")
    drawing = st_canvas(
        stroke_width=brush,
        stroke_color=STROKE,
        fill_color=STROKE,
        background_image=Image.open(io.BytesIO(png)).convert("RGB"),
        height=height,
        width=CANVAS_W,
        drawing_mode=tool,
        return_image_data=True,
        key=f"rd_canvas_{photo['id']}",
    )
    data = drawing.image_data if (drawing.json_data or {}).get("objects") else None
    if data is None:
        return None
    painted = mask_png(data, photo["width"], photo["height"])
    if painted is None:
        return None
    digest = hashlib.sha256(painted).hexdigest()
    if st.session_state.get("rd_mask_digest") != digest:
        try:
            st.session_state["rd_mask"] = client.upload_as("mask", painted, "mask.png", "image/png")
            st.session_state["rd_mask_digest"] = digest
        except ApiError as err:
            st.error(escape(err.message))
            return None
    mask: dict[str, Any] | None = st.session_state.get("rd_mask")
    if mask is not None and mask.get("coverage") is not None:  # the mask the render will take, said
        st.caption(f"Mask: {float(mask['coverage']):.0%} of the photo is painted.")
    return mask


def render(client: ApiClient, mode: str, inputs: dict[str, Any]) -> None:
    try:
        job = client.submit_template_job(mode, inputs, str(uuid.uuid4()))
    except ApiError as err:
        st.error(escape(err.message))
        return
    st.session_state["rd_job"] = job["id"]
    st.session_state.pop("rd_loaded", None)


def result(client: ApiClient, photo_png: bytes, mask: dict[str, Any] | None) -> None:
    job_id = st.session_state.get("rd_job")
    if not job_id:
        return
    job = follow(client, client.job(job_id))  # live: the queue, each step, the render forming; Cancel
    if job["status"] != "succeeded" or not job.get("images"):
        st.error(escape((job.get("error") or {}).get("message", job["status"])))
        return
    after = image_bytes(client, client.token, job["images"][0]["url"])
    passes = {p["label"]: p for p in job.get("passes") or []}
    before = photo_png
    if "Photo at render size" in passes:
        before = image_bytes(client, client.token, passes["Photo at render size"]["url"])
    if mask is not None and st.toggle("Show the mask", key="rd_show_mask"):
        region = next((p for label, p in passes.items() if label != "Photo at render size"), None)
        if region is not None:
            before = overlay(before, image_bytes(client, client.token, region["url"]))
    with Image.open(io.BytesIO(after)) as shown:
        size = shown.size
    prompt = (job.get("params") or {}).get("prompt") or "the redesign"
    before_after(before, after, size, "The room photo before the redesign", f"The redesigned room: {prompt}")
    st.caption("Left: the photo · right: the render. Drag the slider to compare.")


def settings_of(job: dict[str, Any]) -> dict[str, Any]:
    """What the form takes from a photo render (restyle, stage, edit): its mode, prompt, style, creativity."""
    params = job["params"]
    label = next(label for label, mode in MODES.items() if mode == job["kind"])
    return {
        "rd_mode": label,
        "rd_prompt": params.get("prompt") or "",
        "rd_style": params.get("style") or "none",
    } | ({"rd_creativity": float(params["creativity"])} if "creativity" in params else {})


def load_settings(settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        st.session_state[key] = value


def page(client: ApiClient) -> None:
    st.title("Redesign a photo")
    opened = st.session_state.pop("rd_from_gallery", None)
    if opened is not None:
        st.session_state["rd_photo"], st.session_state["rd_source"] = opened, f"image:{opened['id']}"
        st.session_state.pop("rd_job", None)
        st.session_state.pop("rd_loaded", None)
    settings = st.session_state.pop("rd_settings", None)
    if settings is not None:  # "Edit settings" of a photo render in the gallery: its values in the form
        load_settings(settings)
        st.session_state["rd_loaded"] = True
    if st.session_state.get("rd_loaded"):  # until the next render: the canvas reruns the page as it loads
        st.info("Its settings are loaded: paint the mask again, change what you like and render.")
    photo = photo_input(client)
    if photo is None:
        st.info("Upload a photo of the room, or open a render from the gallery with Edit a region.")
        return
    photo_png = image_bytes(client, client.token, photo["url"])
    label = st.radio("What to do", list(MODES), horizontal=True, key="rd_mode")
    mode = MODES[label]
    mask = paint_mask(client, photo, photo_png, mode)
    prompt = st.text_area(
        "Describe it" if mode != "edit" else "What goes there (empty: clear the region)", key="rd_prompt"
    )
    style_ids = [s["id"] for s in client.styles()]
    if st.session_state.get("rd_style") not in style_ids:
        st.session_state["rd_style"] = "none" if "none" in style_ids else style_ids[0]
    style = st.selectbox("Style", style_ids, key="rd_style")
    inputs: dict[str, Any] = {"photo": photo["id"], "style": style}
    if prompt.strip():
        inputs["prompt"] = prompt.strip()
    if mode == "restyle":
        inputs["creativity"] = st.slider("Creativity", 0.2, 0.9, 0.55, 0.05, key="rd_creativity")
    if mask is not None:
        inputs[MASK_INPUT[mode]] = mask["id"]
    missing = mode != "restyle" and mask is None
    if missing:
        st.caption("Paint the region on the photo first.")
    if st.button("Render", type="primary", key="rd_render", disabled=missing, icon=":material/auto_awesome:"):
        render(client, mode, inputs)
    result(client, photo_png, mask)


if __name__ == "__main__":
    from frontend.context import client

    page(client())
