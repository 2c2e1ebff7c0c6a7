"""The Place a product form's state from a product job (the gallery's *Edit settings*): its uploads by role,
its values in the form's widgets, the job shown."""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.api_client import ApiClient

ROLES = ("product", "composition", "style_photo")
WIDGETS = {  # input key -> the form's widget
    "prompt": "w_pp_prompt",
    "style": "w_pp_style",
    "depth_strength": "w_pp_depth",
    "composition_strength": "w_pp_composition",
    "style_strength": "w_pp_style_strength",
}


def load_product_job(client: ApiClient, job: dict[str, Any]) -> None:
    """ApiError when an upload cannot be read (nothing is changed then)."""
    params = job.get("params") or {}
    uploads = {role: client.upload(params[role]) for role in ROLES if params.get(role)}
    ss = st.session_state
    ss["product_uploads"] = uploads
    ss["product_sources"] = {}
    for key, widget in WIDGETS.items():
        if params.get(key) is not None:
            ss[widget] = params[key]
    ss["w_pp_random_seed"] = False
    ss["w_pp_seed"] = int(job["seed"])
    ss["product_job_id"] = job["id"]
    ss["pp_notice"] = None
