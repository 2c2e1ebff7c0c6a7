"""The gallery: every render of the designer, newest first, filtered and paged, with its exact settings."""

from __future__ import annotations

from datetime import date
from typing import Any

import streamlit as st

from frontend import state
from frontend.api_client import ApiClient, ApiError
from frontend.components import STATUS_ICONS, escape, image_bytes, settings_text

COLUMNS = 3
KINDS = {"All": None, "Text": "text", "Sketch": "sketch"}


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
        st.session_state["notice"] = ("error", err.message)
        return
    st.session_state["goto_studio"] = True


def _edit(client: ApiClient, job: dict[str, Any]) -> None:
    upload = None
    if job["params"].get("upload_id"):
        try:
            upload = client.upload(job["params"]["upload_id"])
        except ApiError as err:
            st.session_state["notice"] = ("error", err.message)
            return
    state.load_params(job["params"], upload)
    state.show_job(job["id"])
    st.session_state["notice"] = ("success", "Settings loaded from the gallery: change what you like.")
    st.session_state["goto_studio"] = True


def filters(styles: list[dict[str, Any]]) -> dict[str, Any]:
    c1, c2, c3 = st.columns([2, 2, 3])
    names = {"All styles": None} | {s["name"]: s["id"] for s in styles}
    style = c1.selectbox("Style", list(names), key="g_style", on_change=_reset_paging)
    kind = c2.segmented_control(
        "Made from", list(KINDS), key="g_kind", default="All", on_change=_reset_paging
    )
    days = c3.date_input(
        "Created between", value=[], key="g_days", on_change=_reset_paging, format="YYYY-MM-DD"
    )
    chosen: dict[str, Any] = {"style": names[style], "kind": KINDS.get(kind or "All")}
    if isinstance(days, tuple) and days:
        chosen["created_from"] = days[0].isoformat()
        chosen["created_to"] = (days[1] if len(days) > 1 else days[0]).isoformat()
    elif isinstance(days, date):
        chosen["created_from"] = chosen["created_to"] = days.isoformat()
    return chosen


def card(client: ApiClient, job: dict[str, Any], style_names: dict[str, str]) -> None:
    with st.container(border=True):
        images = job.get("images") or []
        if images:
            try:
                st.image(image_bytes(client, client.token, images[0]["thumbnail_url"]), width="stretch")
            except ApiError as err:
                st.caption(err.message)
        else:
            st.markdown(f"#### {STATUS_ICONS.get(job['status'], '')} {job['status'].capitalize()}")
        when = job["created_at"][:16].replace("T", " ")
        style = style_names.get(job["style"], job["style"])
        more = f" · {len(images)} images" if len(images) > 1 else ""
        st.caption(f"{STATUS_ICONS.get(job['status'], '')} {style} · {job['kind']} · {when} UTC{more}")
        st.text(_short(job["params"].get("prompt", "")))
        with st.expander("Settings"):
            st.text(settings_text(job["params"]))
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
        b1, b2 = st.columns(2)
        b1.button("Render again", key=f"again_{job['id']}", on_click=_render_again, args=(client, job))
        b2.button("Edit settings", key=f"edit_{job['id']}", on_click=_edit, args=(client, job))


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def page(client: ApiClient, page_size: int) -> None:
    styles = client.styles()
    names = {s["id"]: s["name"] for s in styles}
    notice = st.session_state.pop("notice", None)
    if notice:
        getattr(st, notice[0])(escape(notice[1]))
    chosen = filters(styles)
    cursors: list[str | None] = st.session_state["gallery_cursors"]
    result = client.jobs(limit=page_size, cursor=cursors[-1], **chosen)
    items = result["items"]
    if not items:
        st.info("No renders here yet." if len(cursors) == 1 else "No older renders.")
    for start in range(0, len(items), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, job in zip(cols, items[start : start + COLUMNS], strict=False):
            with col:
                card(client, job, names)
    c1, c2, c3 = st.columns([1, 1, 4])
    c1.button("← Newer", key="g_newer", on_click=_newer, disabled=len(cursors) == 1)
    if result["next_cursor"]:
        c2.button("Older →", key="g_older", on_click=_older, args=(result["next_cursor"],))
    c3.caption(f"Page {len(cursors)}")


if __name__ == "__main__":
    from frontend.context import client, page_params, settings

    if st.session_state.pop("goto_studio", False):
        st.switch_page("views/studio.py", query_params=page_params())
    page(client(), settings().gallery_page_size)
