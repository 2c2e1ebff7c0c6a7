"""The gallery: every render of the designer, newest first, filtered (style, kind, dates, project,
favourites) and paged, with its exact settings; each render is marked as a favourite or filed into
projects from its card."""

from __future__ import annotations

from datetime import date
from typing import Any

import streamlit as st

from frontend import state, theme, wording
from frontend.api_client import ApiClient, ApiError
from frontend.components import (
    BUILTIN_KINDS,
    STATUS_ICONS,
    escape,
    image_bytes,
    inputs_text,
    render_alt,
    settings_text,
)
from frontend.views.product_state import load_product_job
from frontend.views.redesign import MODES, settings_of

COLUMNS = 3
# What a render was made from: the built-in templates by what the designer did (photo templates together).
KINDS: dict[str, list[str] | None] = {
    "Anything": None,
    "Text": ["text"],
    "Sketch": ["sketch"],
    "Product in a room": ["product"],
    "Photo redesign": list(MODES.values()),
}
PHOTO_KINDS = frozenset(MODES.values())


def _reset_paging() -> None:
    st.session_state["gallery_cursors"] = [None]


def _older(cursor: str) -> None:
    st.session_state["gallery_cursors"].append(cursor)


def _newer() -> None:
    if len(st.session_state["gallery_cursors"]) > 1:
        st.session_state["gallery_cursors"].pop()


def _render_again(client: ApiClient, job: dict[str, Any]) -> None:
    try:
        state.show_job(client.retry(job["id"])["id"])
    except ApiError as err:
        st.session_state["notice"] = ("error", wording.say(err))
        return
    st.session_state["goto_studio"] = True


def _edit_photo(client: ApiClient, job: dict[str, Any]) -> None:
    """A photo render's settings (and its photo) in Redesign a photo."""
    try:
        st.session_state["rd_from_gallery"] = client.upload(job["params"]["photo"])
    except ApiError as err:
        st.session_state["notice"] = ("error", wording.say(err))
        return
    st.session_state["rd_settings"] = settings_of(job)
    st.session_state["goto_redesign"] = True


def _edit(client: ApiClient, job: dict[str, Any]) -> None:
    if job["kind"] in PHOTO_KINDS:
        _edit_photo(client, job)
        return
    if job["kind"] == "product":
        try:
            load_product_job(client, job)
        except ApiError as err:
            st.session_state["notice"] = ("error", err.message)
            return
        st.session_state["goto_product"] = True
        return
    if job["kind"] not in BUILTIN_KINDS:
        _edit_template(client, job)
        return
    upload = None
    if job["params"].get("upload_id"):
        try:
            upload = client.upload(job["params"]["upload_id"])
        except ApiError as err:
            st.session_state["notice"] = ("error", wording.say(err))
            return
    state.load_params(job["params"], upload)
    state.show_job(job["id"])
    st.session_state["notice"] = ("success", "Settings loaded from the gallery: change what you like.")
    st.session_state["goto_studio"] = True


def _edit_region(client: ApiClient, image: dict[str, Any]) -> None:
    """The render as a photo upload, opened in Redesign a photo."""
    try:
        st.session_state["rd_from_gallery"] = client.image_as_photo(image["id"])
    except ApiError as err:
        st.session_state["notice"] = ("error", err.message)
        return
    st.session_state["goto_redesign"] = True


def _toggle_favourite(client: ApiClient, job: dict[str, Any]) -> None:
    try:
        client.set_favourite(job["id"], not job.get("favourite"))
    except ApiError as err:
        st.session_state["notice"] = ("error", err.message)


def _refile(client: ApiClient, job: dict[str, Any]) -> None:
    """File the render in the projects now chosen for it; take it out of the others."""
    chosen = set(st.session_state[f"gp_{job['id']}"])
    before = set(job.get("projects") or [])
    try:
        for project_id in chosen - before:
            client.file_job(project_id, job["id"])
        for project_id in before - chosen:
            client.file_job(project_id, job["id"], filed=False)
    except ApiError as err:
        st.session_state["notice"] = ("error", err.message)


def organise(client: ApiClient, job: dict[str, Any], projects: dict[str, str]) -> None:
    """The card's favourite toggle and its projects."""
    marked = bool(job.get("favourite"))
    c1, c2 = st.columns([1, 4])
    c1.button(
        ":material/star:" if marked else ":material/star_outline:",
        key=f"fav_{job['id']}",
        type="primary" if marked else "secondary",
        help="Unmark this favourite" if marked else "Mark as a favourite",
        on_click=_toggle_favourite,
        args=(client, job),
    )
    if projects and job["status"] == "succeeded":
        c2.multiselect(
            "Projects",
            list(projects),
            default=[p for p in job.get("projects") or [] if p in projects],
            format_func=projects.__getitem__,
            key=f"gp_{job['id']}",
            label_visibility="collapsed",
            placeholder="File in a project",
            on_change=_refile,
            args=(client, job),
        )


def filters(
    styles: list[dict[str, Any]],
    projects: dict[str, str] | None = None,
    templates: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    c1, c2, c3 = st.columns([2, 2, 3])
    names = {"All styles": None} | {s["name"]: s["id"] for s in styles}
    style = c1.selectbox("Style", list(names), key="g_style", on_change=_reset_paging)
    kinds = KINDS | {f"Template: {t['title']}": [t["name"]] for t in templates or [] if not t["builtin"]}
    kind = c2.selectbox("Made from", list(kinds), key="g_kind", on_change=_reset_paging)
    days = c3.date_input(
        "Created between", value=[], key="g_days", on_change=_reset_paging, format="YYYY-MM-DD"
    )
    chosen: dict[str, Any] = {"style": names[style], "kind": kinds.get(kind or "Anything")}
    if isinstance(days, tuple) and days:
        chosen["created_from"] = days[0].isoformat()
        chosen["created_to"] = (days[1] if len(days) > 1 else days[0]).isoformat()
    elif isinstance(days, date):
        chosen["created_from"] = chosen["created_to"] = days.isoformat()
    c4, c5 = st.columns([2, 5], vertical_alignment="bottom")
    names = {"All projects": None} | {name: pid for pid, name in (projects or {}).items()}
    project = c4.selectbox("Project", list(names), key="g_project", on_change=_reset_paging)
    favourites = c5.toggle("Favourites only", key="g_favourite", on_change=_reset_paging)
    chosen |= {"project": names.get(project), "favourite": True if favourites else None}
    return chosen


def _edit_template(client: ApiClient, job: dict[str, Any]) -> None:
    try:
        template = client.template(job["kind"])
    except ApiError as err:
        st.session_state["notice"] = ("error", wording.say(err))
        return
    state.load_template_values(job["kind"], template.get("inputs") or [], job["params"])
    state.show_job(job["id"])
    st.session_state["notice"] = ("success", "Settings loaded from the gallery: change what you like.")
    st.session_state["goto_studio"] = True


def card(
    client: ApiClient,
    job: dict[str, Any],
    style_names: dict[str, str],
    projects: dict[str, str] | None = None,
) -> None:
    with st.container(border=True):
        images = job.get("images") or []
        if images:
            try:
                thumbnail = image_bytes(client, client.token, images[0]["thumbnail_url"])
                st.image(thumbnail, width="stretch", alt=render_alt(job, images[0]))
            except ApiError as err:
                st.caption(escape(wording.say(err)))
        else:
            st.markdown(f"#### {STATUS_ICONS.get(job['status'], '')} {job['status'].capitalize()}")
        when = theme.local_time(job["created_at"])
        style = style_names.get(job["style"], job["style"] or job["kind"])
        more = f" · {len(images)} images" if len(images) > 1 else ""
        st.caption(f"{STATUS_ICONS.get(job['status'], '')} {style} · {job['kind']} · {when}{more}")
        st.text(_short(job["params"].get("prompt", "")))
        with st.expander("Details and downloads"):
            st.text(settings_text(job["params"]) if job["kind"] in BUILTIN_KINDS else inputs_text(job))
            for image in images:
                try:
                    data = image_bytes(client, client.token, image["url"])
                except ApiError:
                    continue
                st.download_button(
                    f"Download #{image['index'] + 1} (seed {image['seed']})",
                    data,
                    f"studio-{job['style']}-{image['seed']}.png",
                    "image/png",
                    key=f"gdl_{image['id']}",
                    icon=":material/download:",
                )
        organise(client, job, projects or {})
        # One a row, the card's width: the labels stay whole on a 1280-wide screen.
        st.button(
            "Render again",
            key=f"again_{job['id']}",
            on_click=_render_again,
            args=(client, job),
            icon=":material/replay:",
            width="stretch",
            help="the same settings and seed, rendered again",
        )
        st.button(
            "Edit settings",
            key=f"edit_{job['id']}",
            on_click=_edit,
            args=(client, job),
            icon=":material/tune:",
            width="stretch",
            help="open its settings in the form it was made with, to change and render",
        )
        if images:
            st.button(
                "Edit a region",
                key=f"region_{job['id']}",
                on_click=_edit_region,
                args=(client, images[0]),
                icon=":material/format_paint:",
                width="stretch",
                help="open this render in Redesign a photo: paint a region, describe it or clear it",
            )


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def page(client: ApiClient, page_size: int) -> None:
    styles = client.styles()
    names = {s["id"]: s["name"] for s in styles}
    notice = st.session_state.pop("notice", None)
    if notice:
        getattr(st, notice[0])(escape(notice[1]))
    projects = {p["id"]: p["name"] for p in client.projects()}
    chosen = filters(styles, projects, client.templates())
    cursors: list[str | None] = st.session_state["gallery_cursors"]
    result = client.jobs(limit=page_size, cursor=cursors[-1], **chosen)
    items = result["items"]
    if not items:
        st.info("No renders here yet." if len(cursors) == 1 else "No older renders.")
    for start in range(0, len(items), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, job in zip(cols, items[start : start + COLUMNS], strict=False):
            with col:
                card(client, job, names, projects)
    c1, c2, c3 = st.columns([1, 1, 4])
    c1.button("← Newer", key="g_newer", on_click=_newer, disabled=len(cursors) == 1)
    if result["next_cursor"]:
        c2.button("Older →", key="g_older", on_click=_older, args=(result["next_cursor"],))
    c3.caption(f"Page {len(cursors)}")


if __name__ == "__main__":
    from frontend.context import client, page_params, settings

    if st.session_state.pop("goto_redesign", False):
        st.switch_page("views/redesign.py", query_params=page_params())
    if st.session_state.pop("goto_studio", False):
        st.switch_page("views/studio.py", query_params=page_params())
    if st.session_state.pop("goto_product", False):
        st.switch_page("views/product.py", query_params=page_params())
    page(client(), settings().gallery_page_size)
