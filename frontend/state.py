"""Every st.session_state key the studio uses, with its default, and the helpers that change them.

Widget keys start with `w_` (a widget with key k *is* st.session_state[k]); the studio's own state has
plain names. What must survive a page reload lives in the URL (`sid`, `job`, `compare`) and on the
backend; the session only caches it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend import presets

DEFAULTS: dict[str, Any] = {
    # signed-in designer
    "token": None,
    "designer": None,
    "role": None,  # designer, lead or admin, from /api/me: `context.role()` (pages and navigation use it)
    "sid": None,
    # the render shown in the studio: one job, or the jobs of a style comparison
    "job_id": None,
    "compare_ids": [],
    # the sketch the next sketch render uses: the backend's upload (id, width, height, dark_lines, ...)
    "upload": None,
    "upload_source": None,  # fingerprint of the file or drawing it came from (no re-upload on rerun)
    "drawing_requested": False,  # "Use this drawing" pressed, waiting for the canvas' strokes
    "notice": None,  # one message shown once at the top of the studio (e.g. "settings loaded")
    "scroll_to_render": False,  # a render was just started: bring its progress into view once
    "restore_form": None,  # a job id a reload brought back: its settings refill the form once
    # the template the studio renders with ("": the built-in text and sketch renders, today's form)
    "w_template": "",
    "tpl_refused": {},  # template -> input key -> {"message", "value"}: the backend's last 422, per field
    "can_publish": None,  # whether the signed-in designer may publish templates (None: not asked yet)
    # the form
    "w_mode": "Describe a room",
    "w_preset": presets.ROOM_PRESETS[0].name,
    "w_prompt": presets.DEFAULT_PROMPT,
    "w_negative": presets.DEFAULT_NEGATIVE,
    "w_style": None,
    "w_size": next(iter(presets.SIZE_PRESETS)),
    "w_width": 768,
    "w_height": 512,
    "w_steps": presets.DEFAULT_STEPS,
    "w_cfg": presets.DEFAULT_CFG,
    "w_sampler": presets.SAMPLERS[0],
    "w_scheduler": presets.SCHEDULERS[0],
    "w_random_seed": True,
    "w_seed": 1234,
    "w_num_images": 1,
    "w_sketch_strength": presets.DEFAULT_SKETCH_STRENGTH,
    # Place a product: the uploads by role ({"product": upload, "composition": ..., "style_photo": ...}),
    # the file each came from (no re-upload on rerun), and the product render shown
    "product_uploads": {},
    "product_sources": {},
    "product_job_id": None,
    "product_compare_ids": [],  # product jobs of a style comparison, drawn above the current render
    "pp_notice": None,  # a message shown once above the product form
    "w_pp_prompt": "a bright living room, white oak floor, linen curtains, soft daylight",
    "w_pp_depth": 0.8,
    "w_pp_composition": 0.6,
    "w_pp_style_strength": 0.7,
    "w_pp_style": "none",
    "w_pp_random_seed": True,
    "w_pp_seed": 1234,
    # gallery
    "gallery_cursors": [None],  # cursor of each page seen; the last one is the page shown
    # projects: the one open, a share link's address just made (shown once), a ZIP ready to download
    "project_id": None,
    "new_share_url": None,
    "project_zip": None,
    # API keys: a secret just made or rotated, shown once ({"name", "key"}), dropped when dismissed
    "new_api_key": None,
}
MODES = ("Describe a room", "Start from a sketch")


def init() -> None:
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = list(value) if isinstance(value, list) else value


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    init()


def show_job(job_id: str | None) -> None:
    """The studio shows this job (None: none); kept in the URL so a reload shows it again."""
    st.session_state["job_id"] = job_id
    close_comparison()
    if job_id:
        st.session_state["scroll_to_render"] = True
        st.query_params["job"] = job_id
    else:
        st.query_params.pop("job", None)


def show_comparison(job_ids: list[str]) -> None:
    """A style comparison above the studio (the current render stays where it is)."""
    st.session_state["compare_ids"] = list(job_ids)
    st.query_params["compare"] = ",".join(job_ids)


def close_comparison() -> None:
    st.session_state["compare_ids"] = []
    st.query_params.pop("compare", None)


def restore_from_url() -> None:
    """After a reload the session is new: take the shown renders from the URL."""
    if st.session_state["job_id"] is None and (job_id := st.query_params.get("job")):
        st.session_state["job_id"] = job_id
        st.session_state["restore_form"] = job_id
    if not st.session_state["compare_ids"] and (compare := st.query_params.get("compare")):
        st.session_state["compare_ids"] = [j for j in compare.split(",") if j][:8]


def load_params(params: dict[str, Any], upload: dict[str, Any] | None = None) -> None:
    """Fill the form with a render's exact settings (from a callback, before the widgets exist)."""
    ss = st.session_state
    ss["w_prompt"] = params.get("prompt", "")
    ss["w_negative"] = params.get("negative_prompt", "")
    ss["w_style"] = params.get("style", ss["w_style"])
    width, height = int(params.get("width", 768)), int(params.get("height", 512))
    ss["w_width"], ss["w_height"] = width, height
    ss["w_size"] = presets.size_preset_for(width, height)
    ss["w_steps"] = int(params.get("steps", presets.DEFAULT_STEPS))
    ss["w_cfg"] = float(params.get("cfg", presets.DEFAULT_CFG))
    if params.get("sampler") in presets.SAMPLERS:
        ss["w_sampler"] = params["sampler"]
    if params.get("scheduler") in presets.SCHEDULERS:
        ss["w_scheduler"] = params["scheduler"]
    if params.get("seed") is not None:
        ss["w_random_seed"] = False
        ss["w_seed"] = int(params["seed"])
    ss["w_num_images"] = int(params.get("num_images", 1))
    ss["w_sketch_strength"] = float(params.get("sketch_strength", presets.DEFAULT_SKETCH_STRENGTH))
    ss["w_template"] = ""
    if params.get("kind") == "sketch" and upload is not None:
        use_sketch(upload)
    else:
        ss["w_mode"] = MODES[0]


def load_template_values(template: str, inputs: list[dict[str, Any]], values: dict[str, Any]) -> None:
    """Fill a template's generated form with a render's input values (from a callback). Images are
    not refilled: an upload widget cannot be set, the designer picks the file again."""
    ss = st.session_state
    ss["w_template"] = template
    for decl in inputs:
        value, widget = values.get(decl["key"]), f"w_tpl_{template}_{decl['key']}"
        if decl["kind"] == "image" or value is None:
            continue
        ss[widget] = value
        if decl["kind"] == "seed":
            ss[f"{widget}_random"] = False


def use_sketch(upload: dict[str, Any]) -> None:
    st.session_state["w_template"] = ""
    st.session_state["upload"] = upload
    st.session_state["upload_source"] = f"upload:{upload['id']}"
    st.session_state["w_mode"] = MODES[1]
