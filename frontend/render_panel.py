"""The render the studio shows, across the top of the page and the whole width: live progress, the
result, a before/after slider when it started from an image, its exact settings.

Right after Render the page scrolls it into view (whatever the form's length), and a reload restores
the form from the job's own settings, not only the job.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend import state, theme, wording
from frontend.api_client import ApiClient, ApiError
from frontend.before_after import before_after
from frontend.components import (
    BUILTIN_KINDS,
    escape,
    follow,
    image_bytes,
    inputs_text,
    passes,
    results,
    settings_text,
    show_outcome,
)

PANEL_KEY = "render_panel"


def restore_form(client: ApiClient, job_id: str) -> None:
    """Fill the form with the settings of the job a reload brought back (before the widgets exist)."""
    try:
        job = client.job(job_id)
        if job["kind"] in BUILTIN_KINDS:
            upload_id = job["params"].get("upload_id")
            upload = client.upload(upload_id) if upload_id else None
            state.load_params({**job["params"], "kind": job["kind"]}, upload)
        else:
            template = client.template(job["kind"])
            state.load_template_values(job["kind"], template.get("inputs") or [], job["params"])
    except ApiError:
        return  # the form keeps its defaults; the panel says what is wrong with the job


def _starting_image(client: ApiClient, job: dict[str, Any]) -> tuple[bytes, str] | None:
    """The sketch (or a template's first image input: a product photo) the render started from."""
    upload_id = job["params"].get("upload_id") if job["kind"] in BUILTIN_KINDS else None
    label = "Your sketch"
    if upload_id is None and job["kind"] not in BUILTIN_KINDS and job.get("template"):
        try:
            version = client.template_version(job["template"]["name"], int(job["template"]["version"]))
        except (ApiError, TypeError, ValueError):
            return None
        for decl in version.get("inputs") or []:
            if decl["kind"] == "image" and job["params"].get(decl["key"]):
                upload_id, label = job["params"][decl["key"]], f"Your {decl['label'].lower()}"
                break
    if not upload_id:
        return None
    try:
        upload = client.upload(str(upload_id))
        return image_bytes(client, client.token, upload["url"]), label
    except ApiError:
        return None


def compare_slider(client: ApiClient, job: dict[str, Any]) -> None:
    """Before/after over the first image, when the render started from one."""
    images = job.get("images") or []
    if job["status"] != "succeeded" or not images:
        return
    start = _starting_image(client, job)
    if start is None:
        return
    data, label = start
    first = images[0]
    try:
        render = image_bytes(client, client.token, first["url"])
    except ApiError:
        return
    with st.container(key="before_after"):
        st.markdown("**Before and after**")
        before_after(
            data,
            render,
            (int(first["width"]), int(first["height"])),
            f"{label}, the starting image",
            f"The render, seed {first['seed']}",
        )


def current_render(client: ApiClient, styles: list[dict[str, Any]], titles: dict[str, str]) -> None:
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
        st.warning(escape(wording.say(err)))
        return
    builtin = job["kind"] in BUILTIN_KINDS
    if builtin:
        st.subheader(f"{names.get(job['style'], job['style'])} · {job['kind']} render")
        st.text(job["params"].get("prompt", ""))
    else:
        st.subheader(escape(titles.get(job["kind"], job["kind"])))
    scroll = st.empty()  # always there: the elements below keep their places across reruns
    if st.session_state.pop("scroll_to_render", False):
        with scroll:
            theme.scroll_into_view(PANEL_KEY)
    job = follow(client, job)
    show_outcome(job)
    results(client, job)
    compare_slider(client, job)
    passes(client, job)
    with st.expander("Exact settings"):
        st.text(settings_text(job["params"]) if builtin else inputs_text(job))
