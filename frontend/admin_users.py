"""The admin page's accounts part: invite a designer (the one-time link shown once), and for one designer:
role, disable or enable, a new password link, quotas. The backend ends the designer's sessions when a
role changes or the account is disabled; every change is in the audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from frontend.api_client import ApiClient, ApiError
from frontend.components import escape

ROLES = ("designer", "lead", "admin")


def notice(kind: str, message: str) -> None:
    st.session_state["admin_notice"] = (kind, message)


def show_notice() -> None:
    if shown := st.session_state.pop("admin_notice", None):
        kind, message = shown
        (st.success if kind == "success" else st.error)(escape(message))


def _call(action: Callable[[], Any], done: str) -> Any:
    try:
        result = action()
    except ApiError as err:
        notice("error", err.message)
        return None
    notice("success", done)
    return result


def _when(value: str | None) -> str:
    return value[:16].replace("T", " ") + " UTC" if value else "never"


def users_table(users: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "name": u["name"],
            "email": u["email"] or "",
            "role": u["role"],
            "status": "active" if u["is_active"] else "disabled",
            "password": "set" if u["has_password"] else "not yet",
            "identity provider": "linked" if u["oidc_linked"] else "",
            "last sign-in": _when(u["last_sign_in_at"]),
            "max active jobs": str(u["max_active_jobs"] or "default"),
            "uploads per hour": str(u["max_uploads_per_hour"] or "default"),
        }
        for u in users
    ]
    return pd.DataFrame(rows)


# --- invite ---------------------------------------------------------------------------------------------
def _invite(api: ApiClient) -> None:
    s = st.session_state
    name, email, role = s["w_invite_name"].strip(), s["w_invite_email"].strip(), s["w_invite_role"]
    if not name or not email:
        notice("error", "Give the designer's name and email.")
        return
    invited = _call(lambda: api.invite_user(name, email, role), f"{name} is invited as {role}.")
    if invited is not None:
        s["admin_link"] = {"name": name, **invited["password_link"]}


def invite_form(api: ApiClient) -> None:
    with st.form("invite", clear_on_submit=True, border=True):
        st.markdown("**Invite a designer**")
        c1, c2, c3 = st.columns([2, 3, 1])
        c1.text_input("Name", key="w_invite_name", placeholder="e.g. Minh Anh", max_chars=100)
        c2.text_input("Email", key="w_invite_email", placeholder="minh.anh@studio.example")
        c3.selectbox("Role", ROLES, key="w_invite_role")
        st.form_submit_button("Invite", type="primary", key="w_invite", on_click=_invite, args=(api,))


def _dismiss_link() -> None:
    st.session_state.pop("admin_link", None)


def link_box() -> None:
    """A one-time password link just made: shown this once, until dismissed."""
    shown = st.session_state.get("admin_link")
    if not shown:
        return
    with st.container(border=True, key="admin_link_box"):
        st.success(
            f"The link for **{escape(shown['name'])}** to set a password: hand it over now, it is "
            f"not shown again. It works once, until {_when(shown['expires_at'])}."
        )
        st.code(shown["link"], language=None)
        st.button("I have handed it over", key="w_link_dismiss", on_click=_dismiss_link)


# --- one designer ---------------------------------------------------------------------------------------
def _set_role(api: ApiClient, user: dict[str, Any]) -> None:
    role = st.session_state[f"w_role_{user['id']}"]
    _call(
        lambda: api.update_user(user["id"], role=role),
        f"{user['name']} is now {role}: signed out everywhere.",
    )


def _set_active(api: ApiClient, user: dict[str, Any], active: bool) -> None:
    done = (
        f"{user['name']} is enabled." if active else f"{user['name']} is disabled and signed out everywhere."
    )
    _call(lambda: api.update_user(user["id"], is_active=active), done)


def _new_link(api: ApiClient, user: dict[str, Any]) -> None:
    link = _call(lambda: api.password_link(user["id"]), f"A new password link for {user['name']}.")
    if link is not None:
        st.session_state["admin_link"] = {"name": user["name"], **link}


def _set_quotas(api: ApiClient, user: dict[str, Any]) -> None:
    jobs = st.session_state[f"w_quota_jobs_{user['id']}"]
    uploads = st.session_state[f"w_quota_uploads_{user['id']}"]
    _call(
        lambda: api.set_quotas(user["id"], int(jobs) if jobs else None, int(uploads) if uploads else None),
        f"{user['name']}'s quotas are saved.",
    )


def _label(user: dict[str, Any]) -> str:
    suffix = "" if user["is_active"] else " (disabled)"
    return f"{user['name']} · {user['email'] or 'no email'}{suffix}"


def manage(api: ApiClient, users: list[dict[str, Any]], me: str) -> None:
    """Role, disable or enable, a password link and quotas of the designer picked."""
    by_id = {u["id"]: u for u in users}
    picked = st.selectbox(
        "Designer", list(by_id), format_func=lambda uid: _label(by_id[uid]), key="w_admin_user"
    )
    if picked is None:
        return
    user = by_id[picked]
    uid = user["id"]
    with st.container(border=True):
        c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
        c1.selectbox("Role", ROLES, index=ROLES.index(user["role"]), key=f"w_role_{uid}")
        c2.button("Change role", key=f"w_role_save_{uid}", on_click=_set_role, args=(api, user))
        c3.button("New password link", key=f"w_link_{uid}", on_click=_new_link, args=(api, user))
        q1, q2, q3 = st.columns([1, 1, 1], vertical_alignment="bottom")
        q1.number_input(
            "Max active jobs (empty: default)",
            min_value=1,
            max_value=10_000,
            value=user["max_active_jobs"],
            key=f"w_quota_jobs_{uid}",
        )
        q2.number_input(
            "Uploads per hour (empty: default)",
            min_value=1,
            max_value=100_000,
            value=user["max_uploads_per_hour"],
            key=f"w_quota_uploads_{uid}",
        )
        q3.button("Save quotas", key=f"w_quota_save_{uid}", on_click=_set_quotas, args=(api, user))
        if uid == me:
            st.caption("This is your own account: another admin may disable it or change its role.")
        elif user["is_active"]:
            st.button(
                "Disable (signs out at once)",
                key=f"w_disable_{uid}",
                on_click=_set_active,
                args=(api, user, False),
                icon=":material/block:",
            )
        else:
            st.button("Enable", key=f"w_enable_{uid}", on_click=_set_active, args=(api, user, True))


def users_tab(api: ApiClient, me: str) -> list[dict[str, Any]]:
    link_box()
    invite_form(api)
    users = api.users()
    st.dataframe(users_table(users), hide_index=True, width="stretch", key="admin_users_table")
    manage(api, users, me)
    return users
