"""Interior Studio (Streamlit): sign-in, then the studio, the gallery and the API keys pages.

Run with `streamlit run frontend/app.py`. The UI talks only to the backend (BACKEND_URL).
"""

from __future__ import annotations

import streamlit as st

from frontend import state
from frontend.api_client import ApiClient, ApiError
from frontend.components import escape
from frontend.context import settings
from frontend.session import session_store

st.set_page_config(page_title="Interior Studio", page_icon="🛋️", layout="wide")
state.init()
config = settings()
sessions = session_store(config.session_ttl_s)


def _check(token: str) -> dict[str, object] | None:
    """The designer behind a token, or None with the reason shown."""
    client = ApiClient(config, token)
    try:
        return client.me()
    except ApiError as err:
        if err.status == 401:
            st.error("This token is not valid (or it has expired). Ask your studio admin for a new one.")
        else:
            st.error(escape(err.message))
        return None
    finally:
        client.close()


def _sign_in(token: str) -> None:
    designer = _check(token)
    if designer is not None:
        st.session_state["token"] = token
        st.session_state["designer"] = designer
        st.session_state["sid"] = sessions.create(token)
        st.query_params["sid"] = st.session_state["sid"]
        st.rerun()


def _sign_out() -> None:
    if st.session_state["sid"]:
        sessions.drop(st.session_state["sid"])
    state.sign_out()
    st.query_params.clear()


def sign_in_page() -> None:
    st.title("Interior Studio")
    st.caption("Photoreal interior renders from your words or your sketches.")
    if st.query_params.get("sid"):
        st.info("Your session has ended. Sign in again to continue.")
    with st.form("sign_in", border=True):
        token = st.text_input("Designer token", type="password", key="w_token")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if not token.strip():
            st.error("Enter the token your studio admin gave you.")
        else:
            _sign_in(token.strip())
    st.stop()


# A reload starts a new session: the sign-in comes back from the session id in the URL.
if st.session_state["token"] is None and (sid := st.query_params.get("sid")):
    if (token := sessions.token(sid)) is not None:
        st.session_state["token"], st.session_state["sid"] = token, sid
if st.session_state["token"] is None:
    sign_in_page()
if st.query_params.get("sid") != st.session_state["sid"]:
    st.query_params["sid"] = st.session_state["sid"]
state.restore_from_url()

with st.sidebar:
    st.markdown("### :material/chair: Interior Studio")
    designer = st.session_state["designer"]
    if designer is None:
        designer = _check(st.session_state["token"])
        if designer is None:
            _sign_out()
            st.stop()
        st.session_state["designer"] = designer
    st.caption(f"Signed in as **{designer['name']}**")
    st.button("Sign out", key="sign_out", on_click=_sign_out, icon=":material/logout:")

pages = [
    st.Page("views/studio.py", title="Studio", icon=":material/brush:", default=True),
    st.Page("views/gallery.py", title="Gallery", icon=":material/photo_library:"),
    st.Page("views/keys.py", title="API keys", icon=":material/key:"),
]
try:
    st.navigation(pages, position="top").run()
except ApiError as err:
    if err.status == 401:
        _sign_out()
        st.error("Your token is no longer valid. Sign in again.")
    else:
        st.error(escape(err.message))
