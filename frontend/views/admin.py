"""Admin (admins only: app.py offers the page to them, the backend refuses anyone else): designer accounts,
every designer's API keys, recent sign-ins and the audit log."""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.admin_audit import audit_tab, sign_ins_tab
from frontend.admin_users import notice, show_notice, users_tab
from frontend.api_client import ApiClient, ApiError
from frontend.components import escape
from frontend.context import client


def _revoke(api: ApiClient, key: dict[str, Any]) -> None:
    try:
        api.revoke_any_api_key(key["id"])
    except ApiError as err:
        notice("error", err.message)
        return
    notice("success", f"{key['designer_name']}'s key {key['name']} is revoked: it stops working at once.")


def keys_tab(api: ApiClient) -> None:
    keys = api.all_api_keys()
    if not keys:
        st.info("No designer has a live API key.")
    for key in keys:
        with st.container(border=True):
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            used = key["last_used_at"][:16].replace("T", " ") + " UTC" if key["last_used_at"] else "never"
            c1.markdown(
                f"**{escape(key['designer_name'])}** · {escape(key['name'])} · `{key['prefix']}…` · "
                f"{', '.join(key['scopes'])}"
            )
            c1.caption(f"Created {key['created_at'][:10]} · last used {used}")
            c2.button("Revoke", key=f"w_admin_revoke_{key['id']}", on_click=_revoke, args=(api, key))


def main() -> None:
    st.title("Admin")
    st.caption("Designer accounts, API keys, sign-ins and the audit log of the studio.")
    api = client()
    show_notice()
    users_view, keys_view, sign_ins_view, audit_view = st.tabs(
        ["Users", "API keys", "Recent sign-ins", "Audit log"]
    )
    try:
        with users_view:
            users = users_tab(api, st.session_state["designer"]["id"])
        with keys_view:
            keys_tab(api)
        with sign_ins_view:
            sign_ins_tab(api)
        with audit_view:
            audit_tab(api, users)
    except ApiError as err:
        if err.status == 401:
            raise  # app.py: the session has ended
        st.error(escape(err.message))


main()
