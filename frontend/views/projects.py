"""Projects: the designer's clients and rooms. Create one; open it to see its renders, select some,
share the project (or the selection) with a client through an expiring link, revoke a link, and
download the project (or the selection) as a ZIP of full-size PNGs with a contact sheet.

Renders are filed into projects from the gallery. A share link's address is shown once, right after
it is made (only its hash is stored); the list shows each link's expiry and how often it was opened.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.api_client import ApiClient, ApiError
from frontend.components import escape, image_bytes
from frontend.context import client

COLUMNS = 2
LIMIT = 60  # renders shown on a project's page (the ZIP and the project link take them all)


def _notice(kind: str, message: str) -> None:
    st.session_state["project_notice"] = (kind, message)


def _create(api: ApiClient) -> None:
    s = st.session_state
    name = s["w_project_name"].strip()
    if not name:
        _notice("error", "Give the project a name.")
        return
    try:
        project = api.create_project(name, s["w_project_client"].strip(), s["w_project_room"].strip())
    except ApiError as err:
        _notice("error", err.message)
        return
    s["project_id"] = project["id"]
    _notice("success", f"Project {project['name']} created: file renders into it from the gallery.")


def _selected(renders: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in renders if st.session_state.get(f"pick_{i['id']}")]


def _share(api: ApiClient, project: dict[str, Any], renders: list[dict[str, Any]]) -> None:
    s = st.session_state
    chosen = _selected(renders)
    try:
        link = api.create_share_link(project["id"], chosen, s["w_share_title"].strip(), s["w_share_days"])
    except ApiError as err:
        _notice("error", err.message)
        return
    s["new_share_url"] = {"project_id": project["id"], "url": link["url"], "title": link["title"]}


def _revoke(api: ApiClient, link_id: str) -> None:
    try:
        api.revoke_share_link(link_id)
    except ApiError as err:
        _notice("error", err.message)
        return
    _notice("success", "The link is revoked: it stops working at once.")


def _prepare_zip(api: ApiClient, project: dict[str, Any], renders: list[dict[str, Any]]) -> None:
    chosen = _selected(renders)
    try:
        data = api.download_zip(project["id"], chosen)
    except ApiError as err:
        _notice("error", err.message)
        return
    what = f"{len(chosen)} selected renders" if chosen else "the whole project"
    st.session_state["project_zip"] = {"project_id": project["id"], "data": data, "what": what}


def _delete(api: ApiClient, project_id: str) -> None:
    try:
        api.delete_project(project_id)
    except ApiError as err:
        _notice("error", err.message)
        return
    st.session_state["project_id"] = None
    _notice("success", "The project is deleted; its renders stay in the gallery.")


def create_form(api: ApiClient) -> None:
    with st.expander("New project", expanded=False, icon=":material/create_new_folder:"):
        with st.form("new_project", clear_on_submit=True, border=False):
            st.text_input("Name", key="w_project_name", max_chars=100, placeholder="e.g. Nguyen apartment")
            c1, c2 = st.columns(2)
            c1.text_input("Client", key="w_project_client", max_chars=100)
            c2.text_input("Room", key="w_project_room", max_chars=100, placeholder="e.g. living room")
            st.form_submit_button("Create project", type="primary", on_click=_create, args=(api,))


def renders_grid(api: ApiClient, renders: list[dict[str, Any]]) -> None:
    for start in range(0, len(renders), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, image in zip(cols, renders[start : start + COLUMNS], strict=False):
            with col, st.container(border=True):
                try:
                    st.image(image_bytes(api, api.token, image["thumbnail_url"]), width="stretch")
                except ApiError as err:
                    st.caption(escape(err.message))
                st.checkbox("Select", key=f"pick_{image['id']}", help=f"{image['width']} × {image['height']}")


def share_box(api: ApiClient, project: dict[str, Any], renders: list[dict[str, Any]]) -> None:
    chosen = len(_selected(renders))
    with st.container(border=True):
        st.markdown("**Share with a client** · a read-only page of the renders and their downloads")
        c1, c2 = st.columns([2, 1])
        c1.text_input("Title on the page", key="w_share_title", placeholder=project["name"], max_chars=100)
        c2.number_input("Days valid", min_value=1, max_value=90, value=14, key="w_share_days")
        label = f"Share the {chosen} selected" if chosen else "Share the whole project"
        st.button(
            label, key="share_create", on_click=_share, args=(api, project, renders), icon=":material/share:"
        )
        shown = st.session_state.get("new_share_url")
        if shown and shown["project_id"] == project["id"]:
            st.success(f"Link for **{escape(shown['title'])}**: copy it now, it will not be shown again.")
            st.code(shown["url"], language=None)


def links_list(api: ApiClient, project_id: str) -> None:
    links = api.share_links(project_id)
    if not links:
        st.caption("No share links yet.")
    for link in links:
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        what = f"{len(link['image_ids'])} renders" if link["scope"] == "selection" else "whole project"
        state = "active" if link["active"] else ("revoked" if link["revoked_at"] else "expired")
        opened = link["last_access_at"][:16].replace("T", " ") + " UTC" if link["last_access_at"] else "never"
        c1.markdown(f"**{escape(link['title'])}** · {what} · {state}")
        c1.caption(
            f"Made {link['created_at'][:10]} · expires {link['expires_at'][:10]} · "
            f"opened {link['access_count']} times, last {opened}"
        )
        if link["active"]:
            c2.button("Revoke", key=f"revoke_{link['id']}", on_click=_revoke, args=(api, link["id"]))


def zip_box(api: ApiClient, project: dict[str, Any], renders: list[dict[str, Any]]) -> None:
    chosen = len(_selected(renders))
    label = f"Prepare a ZIP of the {chosen} selected" if chosen else "Prepare a ZIP of the project"
    st.button(
        label,
        key="zip_prepare",
        on_click=_prepare_zip,
        args=(api, project, renders),
        icon=":material/folder_zip:",
    )
    ready = st.session_state.get("project_zip")
    if ready and ready["project_id"] == project["id"]:
        name = "".join(c if c.isalnum() else "-" for c in project["name"].lower()).strip("-") or "renders"
        st.download_button(
            f"Download the ZIP ({ready['what']}, {len(ready['data']) / 1024**2:.1f} MB)",
            ready["data"],
            f"{name}.zip",
            "application/zip",
            key="zip_download",
            icon=":material/download:",
        )
        st.caption("Full-size PNGs and contact-sheet.png: each render's thumbnail with its settings.")


def project_view(api: ApiClient, project: dict[str, Any]) -> None:
    where = " · ".join(x for x in (project["client"], project["room"]) if x)
    st.subheader(project["name"])
    st.caption(
        f"{escape(where)} · {project['renders']} renders" if where else f"{project['renders']} renders"
    )
    jobs = api.jobs(limit=LIMIT, project=project["id"], status=["succeeded"])["items"]
    renders = [image for job in jobs for image in job["images"]]
    left, right = st.columns([1, 1], gap="large")
    with left:
        if not renders:
            st.info("No renders here yet: file some from the gallery (Projects, on each render).")
        renders_grid(api, renders)
    with right:
        share_box(api, project, renders)
        st.markdown("**Share links**")
        links_list(api, project["id"])
        st.divider()
        zip_box(api, project, renders)
        with st.expander("Delete this project"):
            st.caption("Its share links stop working; its renders stay in the gallery.")
            st.button("Delete project", key="project_delete", on_click=_delete, args=(api, project["id"]))


def main() -> None:
    api = client()
    st.title("Projects")
    st.caption("Your clients and rooms: file renders into them, share them, download them.")
    if notice := st.session_state.pop("project_notice", None):
        (st.error if notice[0] == "error" else st.success)(escape(notice[1]))
    create_form(api)
    projects = api.projects()
    if not projects:
        st.info("No projects yet: create one above.")
        return
    by_id = {p["id"]: p for p in projects}
    if st.session_state.get("project_id") not in by_id:
        st.session_state["project_id"] = projects[0]["id"]
    st.selectbox(
        "Project",
        list(by_id),
        key="project_id",
        format_func=lambda pid: f"{by_id[pid]['name']} ({by_id[pid]['renders']})",
    )
    project_view(api, by_id[st.session_state["project_id"]])


if __name__ == "__main__":
    main()
