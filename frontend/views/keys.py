"""API keys: the designer's own keys for integrations (a CMS, a script): make one, see when each was last
used, rotate or revoke it. A key's secret is shown once, right after it is made or rotated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from frontend import theme
from frontend.api_client import ApiClient, ApiError
from frontend.components import escape
from frontend.context import client

SCOPES = {"Read (jobs, images, events, styles)": "read", "Render (also start, cancel and retry)": "render"}


def _create(api: ApiClient) -> None:
    name = st.session_state["w_key_name"].strip()
    scopes = [SCOPES[label] for label in st.session_state["w_key_scopes"]]
    if not name or not scopes:
        st.session_state["notice"] = ("error", "Give the key a name and at least one scope.")
        return
    _show_secret(lambda: api.create_api_key(name, scopes))


def _rotate(api: ApiClient, key_id: str) -> None:
    _show_secret(lambda: api.rotate_api_key(key_id))


def _show_secret(call: Callable[[], dict[str, Any]]) -> None:
    try:
        created = call()
    except ApiError as err:
        st.session_state["notice"] = ("error", err.message)
        return
    st.session_state["new_api_key"] = {"name": created["name"], "key": created["key"]}


def _revoke(api: ApiClient, key_id: str) -> None:
    try:
        api.revoke_api_key(key_id)
    except ApiError as err:
        st.session_state["notice"] = ("error", err.message)
        return
    st.session_state["notice"] = ("success", "The key is revoked: it stops working at once.")


def _dismiss() -> None:
    st.session_state["new_api_key"] = None


def secret_box() -> None:
    shown = st.session_state["new_api_key"]
    if shown is None:
        return
    with st.container(border=True):
        st.success(f"Your key **{escape(shown['name'])}**: copy it now, it will not be shown again.")
        st.code(shown["key"], language=None)
        st.caption("Use the copy button at the right of the box. Send it as `x-api-key: <key>`.")
        st.button("I have stored it", key="key_dismiss", on_click=_dismiss)


def key_row(api: ApiClient, key: dict[str, Any]) -> None:
    with st.container(border=True):
        c1, c2, c3 = st.columns([4, 1, 1])
        c1.markdown(f"**{escape(key['name'])}** · `{key['prefix']}…` · {', '.join(key['scopes'])}")
        used = theme.local_time(key["last_used_at"]) if key["last_used_at"] else "never"
        c1.caption(
            f"Created {theme.local_time(key['created_at'])[:10]} · last used {used} · "
            f"{key['rate_limit_per_minute']} requests/min · {key['renders_per_day']} renders/day"
        )
        c2.button("Rotate", key=f"key_rotate_{key['id']}", on_click=_rotate, args=(api, key["id"]))
        c3.button("Revoke", key=f"key_revoke_{key['id']}", on_click=_revoke, args=(api, key["id"]))


def create_form(api: ApiClient) -> None:
    with st.form("new_key", clear_on_submit=True, border=True):
        st.text_input("Name", key="w_key_name", placeholder="e.g. CMS, quoting tool", max_chars=100)
        st.multiselect("Scopes", list(SCOPES), default=[next(iter(SCOPES))], key="w_key_scopes")
        st.form_submit_button("Create key", type="primary", on_click=_create, args=(api,))


api = client()
st.title("API keys")
st.caption("Keys let your tools call the studio's API as you. Each may read, or also start renders.")
if notice := st.session_state.get("notice"):
    kind, message = notice
    (st.error if kind == "error" else st.success)(escape(message))
    st.session_state["notice"] = None
secret_box()
create_form(api)
keys = api.api_keys()
if not keys:
    st.info("No API keys yet.")
for item in keys:
    key_row(api, item)
