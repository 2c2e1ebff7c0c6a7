"""A before/after slider (sketch → render, product → staged room): two images stacked, a range input
reveals the render over the starting image. Plain HTML and a few lines of JavaScript in the page, nothing
fetched at run time; the range input is a labelled control (arrow keys move it)."""

from __future__ import annotations

import base64
import html
import io
import uuid

import streamlit as st
from PIL import Image

START_PERCENT = 50


def _data_url(data: bytes, size: tuple[int, int] | None = None) -> str:
    """A PNG data URL; `size` resizes (the starting image is shown at the render's size)."""
    if size is not None:
        with Image.open(io.BytesIO(data)) as img:
            buf = io.BytesIO()
            img.convert("RGB").resize(size).save(buf, format="JPEG", quality=88)
            return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def slider_html(
    before: bytes, after: bytes, size: tuple[int, int], before_alt: str, after_alt: str, element_id: str
) -> str:
    w, h = size
    b, a = _data_url(before, size), _data_url(after)
    return f"""
<figure id="{element_id}" class="before-after" style="margin:0;max-width:100%">
  <div style="position:relative;width:100%;aspect-ratio:{w}/{h};overflow:hidden;border-radius:0.5rem">
    <img src="{b}" alt="{html.escape(before_alt)}" style="position:absolute;inset:0;width:100%;height:100%">
    <img class="after" src="{a}" alt="{html.escape(after_alt)}"
      style="position:absolute;inset:0;width:100%;height:100%;clip-path:inset(0 0 0 {START_PERCENT}%)">
    <div class="edge" aria-hidden="true"
      style="position:absolute;top:0;bottom:0;left:{START_PERCENT}%;width:3px;background:#fff;
      box-shadow:0 0 4px rgba(0,0,0,.6)"></div>
  </div>
  <label style="display:flex;gap:0.6rem;align-items:center;margin-top:0.4rem;color:#31333f">
    <span>Before</span>
    <input type="range" min="0" max="100" value="{START_PERCENT}" style="flex:1"
      aria-label="Before and after: drag to compare the starting image with the render">
    <span>After</span>
  </label>
</figure>
<script>
(function() {{
  const fig = document.getElementById("{element_id}");
  if (!fig) return;
  const range = fig.querySelector("input"), after = fig.querySelector("img.after"),
        edge = fig.querySelector(".edge");
  const show = () => {{ after.style.clipPath = "inset(0 0 0 " + range.value + "%)";
                        edge.style.left = range.value + "%"; }};
  range.addEventListener("input", show);
  show();
}})();
</script>
"""


def before_after(before: bytes, after: bytes, size: tuple[int, int], before_alt: str, after_alt: str) -> None:
    """Draw the slider; the left of the line shows the starting image, the right the render."""
    element_id = f"ba-{uuid.uuid4().hex[:12]}"
    body = slider_html(before, after, size, before_alt, after_alt, element_id)
    st.html(body, unsafe_allow_javascript=True)


def overlay(photo_png: bytes, mask_png: bytes, alpha: int = 110) -> bytes:
    """The photo with the mask (white = in) tinted red on top, at the photo's size."""
    photo = Image.open(io.BytesIO(photo_png)).convert("RGBA")
    mask = Image.open(io.BytesIO(mask_png)).convert("RGB").getchannel("R").resize(photo.size)
    tint = Image.new("RGBA", photo.size, (230, 40, 40, 0))
    tint.putalpha(mask.point(lambda v: alpha if v > 127 else 0))
    out = io.BytesIO()
    Image.alpha_composite(photo, tint).convert("RGB").save(out, "PNG")
    return out.getvalue()
