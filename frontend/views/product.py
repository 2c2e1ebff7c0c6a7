"""Place a product: a product photo (cut out at upload), an optional composition sketch and style photo,
strengths, a prompt and a studio style → the built-in `product` template; its progress through every pass,
the staged room against the product photo, the passes (draft, refine 1, refine 2, upscaled) and the full
2048x2048 PNG."""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass
from typing import Any

import streamlit as st
from PIL import Image

from frontend.api_client import ApiClient, ApiError
from frontend.before_after import before_after
from frontend.components import comparison, escape, follow, image_bytes, inputs_text, show_outcome

TEMPLATE = "product"
TYPES = ["png", "jpg", "jpeg", "webp"]
PREVIEW_PX = 512  # the render's own size before the x4 upscale
SHOWN_PX = 1024  # the staged room in the before/after (a 2048x2048 PNG is 10 MB in the page)


@dataclass(frozen=True)
class Slot:
    role: str  # the upload role, also the template's input key
    title: str
    help: str
    preview_caption: str


SLOTS = (
    Slot("product", "Product photo", "The product on a plain background, or a PNG already cut out",
         "Cut out (transparent shows as squares)"),
    Slot("composition", "Composition sketch (optional)", "Floor and wall lines, dark on white",
         "The edges, as the ControlNet sees them"),
    Slot("style_photo", "Style photo (optional)", "A room whose light, colours and materials to follow",
         "The style photo, as the IPAdapter gets it"),
)  # fmt: skip


def _store(client: ApiClient, slot: Slot, data: bytes, name: str, content_type: str) -> None:
    fingerprint = hashlib.sha256(data).hexdigest()
    if st.session_state["product_sources"].get(slot.role) == fingerprint:
        return
    try:
        upload = client.upload_as(slot.role, data, name, content_type)
    except ApiError as err:
        st.error(escape(err.message))
        st.session_state["product_uploads"].pop(slot.role, None)
        return
    st.session_state["product_uploads"][slot.role] = upload
    st.session_state["product_sources"][slot.role] = fingerprint


def _remove(role: str) -> None:
    st.session_state["product_uploads"].pop(role, None)
    st.session_state["product_sources"].pop(role, None)


def upload_slot(client: ApiClient, slot: Slot) -> None:
    st.markdown(f"**{slot.title}**")
    file = st.file_uploader(slot.help, type=TYPES, key=f"w_pp_file_{slot.role}")
    if file is not None:
        _store(client, slot, file.getvalue(), file.name, file.type or "application/octet-stream")
    upload = st.session_state["product_uploads"].get(slot.role)
    if not upload:
        return
    try:
        preview = client.binary(upload["preview_url"], width=PREVIEW_PX, height=PREVIEW_PX)
    except ApiError as err:
        st.warning(escape(err.message))
        return
    st.image(preview, caption=f"{slot.preview_caption} · {upload['width']}×{upload['height']}")
    st.button(
        "Remove", key=f"pp_remove_{slot.role}", on_click=_remove, args=(slot.role,), icon=":material/delete:"
    )


def values() -> dict[str, Any]:
    """The product template's inputs from the form."""
    ss = st.session_state
    found: dict[str, Any] = {
        "prompt": ss["w_pp_prompt"],
        "style": ss["w_pp_style"],
        "depth_strength": float(ss["w_pp_depth"]),
        "composition_strength": float(ss["w_pp_composition"]),
        "style_strength": float(ss["w_pp_style_strength"]),
        "seed": None if ss["w_pp_random_seed"] else int(ss["w_pp_seed"]),
    }
    found.update({role: upload["id"] for role, upload in ss["product_uploads"].items()})
    return {k: v for k, v in found.items() if v is not None}


def _render(client: ApiClient) -> None:
    if "product" not in st.session_state["product_uploads"]:
        st.session_state["pp_notice"] = "Upload a product photo first."
        return
    try:
        job = client.submit_template_job(TEMPLATE, values(), str(uuid.uuid4()))
    except ApiError as err:
        st.session_state["pp_notice"] = err.message
        return
    st.session_state["product_job_id"] = job["id"]


def _render_again(client: ApiClient, job_id: str) -> None:
    try:
        st.session_state["product_job_id"] = client.retry(job_id)["id"]
    except ApiError as err:
        st.session_state["pp_notice"] = err.message


def _compare(client: ApiClient, job: dict[str, Any], style_ids: list[str]) -> None:
    """The same inputs and seed in every studio style, side by side."""
    inputs = {k: v for k, v in (job.get("params") or {}).items() if v is not None}
    ids = []
    try:
        for style in style_ids:
            body = {**inputs, "style": style, "seed": job["seed"]}
            ids.append(client.submit_template_job(TEMPLATE, body, str(uuid.uuid4()))["id"])
    except ApiError as err:
        st.session_state["pp_notice"] = err.message
    st.session_state["product_compare_ids"] = ids


def _close_comparison() -> None:
    st.session_state["product_compare_ids"] = []


def form(client: ApiClient, styles: list[dict[str, Any]]) -> None:
    for col, slot in zip(st.columns(3), SLOTS, strict=True):
        with col:
            upload_slot(client, slot)
    st.text_area("Describe the room", key="w_pp_prompt", height=90, max_chars=2000)
    ids = [s["id"] for s in styles] or ["none"]
    if st.session_state["w_pp_style"] not in ids:
        st.session_state["w_pp_style"] = "none" if "none" in ids else ids[0]
    names = {s["id"]: s["name"] for s in styles}
    st.selectbox("Studio style", ids, key="w_pp_style", format_func=lambda i: names.get(i, i))
    c1, c2, c3 = st.columns(3)
    c1.slider(
        "Depth",
        0.0,
        2.0,
        step=0.05,
        key="w_pp_depth",
        help="How strictly the room follows the product's depth",
    )
    c2.slider("Composition", 0.0, 2.0, step=0.05, key="w_pp_composition",
              help="How strictly the room follows the sketch's lines (no sketch: not used)")  # fmt: skip
    c3.slider("Style", 0.0, 1.5, step=0.05, key="w_pp_style_strength",
              help="How much of the style photo's look the room takes (none given: not used)")  # fmt: skip
    c1, c2 = st.columns(2)
    c1.checkbox("Random seed", key="w_pp_random_seed")
    c2.number_input(
        "Seed", 0, 2**53 - 1, step=1, key="w_pp_seed", disabled=st.session_state["w_pp_random_seed"]
    )
    st.button(
        "Render", type="primary", key="pp_render", on_click=_render, args=(client,), icon=":material/brush:"
    )


def shown(png: bytes, side: int = SHOWN_PX) -> bytes:
    """A render scaled down for the page (the download keeps every pixel)."""
    with Image.open(io.BytesIO(png)) as img:
        small = img.convert("RGB")
        small.thumbnail((side, side))
    buf = io.BytesIO()
    small.save(buf, "PNG")
    return buf.getvalue()


def outcome(client: ApiClient, job: dict[str, Any], style_ids: list[str]) -> None:
    """The staged room against the product photo, the passes, the full-size download, render again."""
    images = job.get("images") or []
    if not images:
        return
    result = image_bytes(client, client.token, images[0]["url"])
    before = client.binary(job["product_preview_url"], width=PREVIEW_PX, height=PREVIEW_PX)
    st.markdown("**Product photo ◀ ▶ Staged room**")
    before_after(
        before, shown(result), (PREVIEW_PX, PREVIEW_PX), "The product photo, cut out", "The staged room"
    )
    strip = [
        *(job.get("passes") or []),
        {**images[0], "label": f"Upscaled {images[0]['width']}×{images[0]['height']}"},
    ]
    st.caption("Passes")
    for col, image in zip(st.columns(len(strip)), strip, strict=True):
        data = image_bytes(client, client.token, image.get("thumbnail_url") or image["url"])
        col.image(data, caption=escape(str(image.get("label") or "")), width="stretch")
    row = st.container(horizontal=True)
    row.download_button(
        f"Download {images[0]['width']}×{images[0]['height']} PNG", result, f"product-{job['seed']}.png",
        "image/png", key=f"pp_dl_{images[0]['id']}", icon=":material/download:",
    )  # fmt: skip
    row.button("Render again", key=f"pp_again_{job['id']}", on_click=_render_again, args=(client, job["id"]),
               help="The same inputs and seed: the same render", icon=":material/replay:")  # fmt: skip
    row.button(
        "Compare styles", key=f"pp_cmp_{job['id']}", on_click=_compare, args=(client, job, style_ids),
        help="These inputs and seed in every studio style, side by side", icon=":material/view_column:",
    )  # fmt: skip


def current(client: ApiClient, style_ids: list[str]) -> None:
    job_id = st.session_state["product_job_id"]
    if not job_id:
        st.info("Your staged room appears here: upload a product photo, describe the room, press Render.")
        return
    try:
        job = client.job(job_id)
    except ApiError as err:
        st.warning(escape(err.message))
        return
    st.subheader("Staged room")
    job = follow(client, job)
    show_outcome(job)
    product_id = (job.get("params") or {}).get("product")
    if job["status"] == "succeeded" and product_id:
        job["product_preview_url"] = client.upload(product_id)["preview_url"]
        outcome(client, job, style_ids)
    with st.expander("Exact settings"):
        st.text(inputs_text(job))


def page(client: ApiClient) -> None:
    st.title("Place a product")
    notice = st.session_state.pop("pp_notice", None)
    if notice:
        st.error(escape(notice))
    styles = client.styles()
    form(client, styles)
    st.divider()
    if st.session_state["product_compare_ids"]:
        head = st.container(horizontal=True, vertical_alignment="center")
        head.subheader("Compare styles")
        head.button("Close", key="pp_close_compare", on_click=_close_comparison, icon=":material/close:")
        comparison(client, st.session_state["product_compare_ids"], {s["id"]: s["name"] for s in styles})
        st.divider()
    current(client, [s["id"] for s in styles])


if __name__ == "__main__":
    from frontend.context import client

    page(client())
