"""Interior Studio (Streamlit): sign-in (`sign_in.py`), then the studio, gallery, API keys and models pages,
and the admin page for admins.

Run with `streamlit run frontend/app.py`. The UI talks only to the backend (BACKEND_URL).
"""

from __future__ import annotations

import streamlit as st

from frontend import sign_in, state, theme
from frontend.api_client import ApiError
from frontend.components import escape
from frontend.context import is_admin, is_lead, settings
from frontend.session import session_store

st.set_page_config(page_title="Interior Studio", page_icon="🛋️", layout="wide")
theme.apply()
state.init()
config = settings()
sessions = session_store(config.session_ttl_s)
sign_in.finish_idp_sign_out()


def _sign_out() -> None:
    sign_in.sign_out(config, sessions)


if link := st.query_params.get("reset"):
    sign_in.set_password_page(config, link)
sign_in.restore(sessions)
if st.session_state["token"] is None:
    sign_in.sign_in_page(config, sessions)
if st.query_params.get("sid") != st.session_state["sid"]:
    st.query_params["sid"] = st.session_state["sid"]
state.restore_from_url()

with st.sidebar:
    st.markdown("### :material/chair: Interior Studio")
    designer = st.session_state["designer"]
    if designer is None:  # a reload: who the kept token is, and their role, asked again
        designer = sign_in.check(config, st.session_state["token"], quiet=True)
        if designer is None:
            sessions.drop(st.session_state["sid"] or "")
            state.sign_out()
            st.rerun()
        sign_in.know(designer)
    role = st.session_state["role"]
    st.caption(f"Signed in as **{escape(designer['name'])}**" + (f" · {role}" if role != "designer" else ""))
    st.button("Sign out", key="sign_out", on_click=_sign_out, icon=":material/logout:")


pages = [
    st.Page("views/studio.py", title="Studio", icon=":material/brush:", default=True),
    st.Page("views/redesign.py", title="Redesign a photo", icon=":material/home:"),
    st.Page("views/product.py", title="Place a product", icon=":material/chair:"),
    st.Page("views/gallery.py", title="Gallery", icon=":material/photo_library:"),
    st.Page("views/projects.py", title="Projects", icon=":material/folder_shared:"),
    st.Page("views/keys.py", title="API keys", icon=":material/key:"),
    st.Page("views/models.py", title="Models", icon=":material/deployed_code:"),
]
if is_lead():  # leads and admins publish templates
    pages.append(st.Page("views/templates.py", title="Templates", icon=":material/account_tree:"))
if is_admin():
    pages.append(st.Page("views/admin.py", title="Admin", icon=":material/admin_panel_settings:"))
try:
    st.navigation(pages, position="top").run()
except ApiError as err:
    if err.status == 401:
        sign_in.sign_out(config, sessions, idp=False)
        st.error("Your session has ended (signed out elsewhere, or your account changed). Sign in again.")
    else:
        st.error(escape(err.message))
