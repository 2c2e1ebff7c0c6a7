"""Signing in and out, and the one-time password links.

A designer signs in with an email and password, or with the studio's identity provider (Streamlit's
`st.login`, when `[auth]` is configured: the app then hands the provider's ID token, `st.user.tokens["id"]`
with `expose_tokens = ["id"]`, to `POST /api/auth/oidc`, which checks it itself). Either way the UI keeps
only the backend session's token (hours, pushed back by activity, ended by sign-out and when an admin
disables the account or changes its role). A pasted designer token still works where TOKEN_SIGN_IN is on
(scripts' tokens; development). The token is kept in `session.py`'s store under the `?sid=` of the URL, so
a reload keeps the sign-in. Refusals are said in a designer's words and never say whether an email has
an account. A link `<studio>/?reset=<token>` opens the set-password form.
"""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from frontend import state
from frontend.api_client import ApiClient, ApiError
from frontend.components import escape
from frontend.config import FrontendSettings
from frontend.session import SessionStore

WRONG = "That email and password do not match. Check them, or ask your studio admin for a new link."
TOKEN_REFUSED = "This token is not valid (or it has expired). Ask your studio admin for a new one."


def oidc_configured() -> bool:
    """Whether Streamlit's `[auth]` (the identity provider, written at start-up) is there."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _idp_signed_in() -> bool:
    return bool(st.user.get("is_logged_in"))


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _message(err: ApiError, config: FrontendSettings) -> str:
    """What a refusal means to a designer (never whether the email has an account)."""
    if err.code == "invalid_credentials":
        return WRONG
    if err.code == "invalid_id_token":
        return f"Your sign-in with {config.oidc_provider_name} has expired or was refused. Sign in again."
    return err.message


def check(config: FrontendSettings, token: str, *, quiet: bool = False) -> dict[str, Any] | None:
    """The designer (with their role) a token signs in, from /api/me; None, with the reason shown unless
    `quiet`."""
    client = ApiClient(config, token)
    try:
        return client.me()
    except ApiError as err:
        if not quiet:
            st.error(escape(TOKEN_REFUSED if err.status == 401 else err.message))
        return None
    finally:
        client.close()


def keep(config: FrontendSettings, sessions: SessionStore, token: str) -> bool:
    """Hold a new sign-in's token once /api/me accepts it; False with the reason shown."""
    designer = check(config, token)
    if designer is None:
        return False
    remember(sessions, token, designer)
    return True


def remember(sessions: SessionStore, token: str, designer: dict[str, Any]) -> None:
    st.session_state["token"] = token
    know(designer)
    st.session_state["sid"] = sessions.create(token)
    st.query_params["sid"] = st.session_state["sid"]


def know(designer: dict[str, Any]) -> None:
    """The signed-in designer and their role (`context.role()`), as /api/me says."""
    st.session_state["designer"] = designer
    st.session_state["role"] = designer.get("role") or "designer"
    st.session_state["can_publish"] = st.session_state["role"] in ("lead", "admin")


def restore(sessions: SessionStore) -> None:
    """After a reload the session is new: the sign-in comes back from the session id in the URL."""
    if st.session_state["token"] is None and (sid := st.query_params.get("sid")):
        if (token := sessions.token(sid)) is not None:
            st.session_state["token"], st.session_state["sid"] = token, sid


def sign_out(config: FrontendSettings, sessions: SessionStore, *, idp: bool = True) -> None:
    """End the backend session and forget the token; with `idp`, sign out of the identity provider too
    (a session that merely ended keeps the provider's sign-in: its ID token may start a new one)."""
    token, sid = st.session_state["token"], st.session_state["sid"]
    if token:
        client = ApiClient(config, token)
        try:
            client.sign_out()
        except ApiError:
            pass  # already ended (expired, disabled): nothing left to end
        finally:
            client.close()
    if sid:
        sessions.drop(sid)
    idp = idp and _idp_signed_in()
    state.sign_out()
    st.query_params.clear()
    st.session_state["idp_sign_out"] = idp  # st.logout runs in the script, after this callback


def finish_idp_sign_out() -> None:
    """The provider's sign-out (st.logout redirects the browser), once the studio's has happened."""
    if st.session_state.pop("idp_sign_out", False):
        st.logout()


# --- the pages ------------------------------------------------------------------------------------------
def _password_sign_in(config: FrontendSettings, sessions: SessionStore, email: str, password: str) -> None:
    if not email.strip() or not password:
        st.error("Enter your email and your password.")
        return
    anonymous = ApiClient(config, None)
    try:
        started = anonymous.sign_in(email.strip(), password)
    except ApiError as err:
        st.error(escape(_message(err, config)))
        return
    finally:
        anonymous.close()
    if keep(config, sessions, started["token"]):
        st.rerun()


def _oidc_exchange(config: FrontendSettings, sessions: SessionStore) -> None:
    """Signed in with the provider: its ID token for a backend session (each token tried once)."""
    id_token = st.user.tokens.get("id")
    if not id_token:
        st.error("The identity provider gave no ID token: the studio's [auth] needs expose_tokens = ['id'].")
        return
    seen = _fingerprint(id_token)
    if st.session_state.get("oidc_refused", {}).get("token") == seen:
        st.error(escape(st.session_state["oidc_refused"]["message"]))
        return
    anonymous = ApiClient(config, None)
    try:
        started = anonymous.oidc_sign_in(id_token)
    except ApiError as err:
        message = _message(err, config)
        st.session_state["oidc_refused"] = {"token": seen, "message": message}
        st.error(escape(message))
        return
    finally:
        anonymous.close()
    if keep(config, sessions, started["token"]):
        st.rerun()


def _provider(config: FrontendSettings) -> None:
    if not oidc_configured():
        return
    if _idp_signed_in():
        st.caption(
            f"Signed in with {escape(config.oidc_provider_name)} as {escape(str(st.user.get('email')))}."
        )
        st.button("Use another account", key="w_idp_switch", on_click=st.logout, icon=":material/logout:")
    else:
        st.button(
            f"Sign in with {config.oidc_provider_name}",
            key="w_idp_sign_in",
            type="primary",
            on_click=st.login,
            icon=":material/passkey:",
            width="stretch",
        )
    st.caption("or with your email and password:")


def sign_in_page(config: FrontendSettings, sessions: SessionStore) -> None:
    st.title("Interior Studio")
    st.caption("Photoreal interior renders from your words or your sketches.")
    if notice := st.session_state.pop("sign_in_notice", None):
        st.success(notice)
    elif st.query_params.get("sid"):
        st.info("Your session has ended. Sign in again to continue.")
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        if oidc_configured() and _idp_signed_in():
            _oidc_exchange(config, sessions)
        _provider(config)
        with st.form("sign_in", border=True):
            email = st.text_input("Email", key="w_email", autocomplete="email")
            password = st.text_input("Password", type="password", key="w_password")
            submitted = st.form_submit_button("Sign in", type="primary", key="w_sign_in")
        if submitted:
            _password_sign_in(config, sessions, email, password)
        st.caption("No password yet, or forgotten it? Your studio admin sends you a link to set one.")
        if config.token_sign_in:
            with st.expander("Sign in with a designer token (scripts, development)"):
                with st.form("token_sign_in", border=False):
                    token = st.text_input("Designer token", type="password", key="w_token")
                    use_token = st.form_submit_button("Sign in with the token", key="w_token_sign_in")
                if use_token:
                    if not token.strip():
                        st.error("Enter the token your studio admin gave you.")
                    elif keep(config, sessions, token.strip()):
                        st.rerun()
    st.stop()


def set_password_page(config: FrontendSettings, link_token: str) -> None:
    """The one-time link's form: the new password twice; then back to signing in."""
    st.title("Set your password")
    st.caption("Choose the password you will sign in with. This link works once.")
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        with st.form("set_password", border=True):
            first = st.text_input("New password", type="password", key="w_new_password")
            second = st.text_input("The same password again", type="password", key="w_new_password_2")
            submitted = st.form_submit_button("Set my password", type="primary", key="w_set_password")
        st.caption("At least 12 characters; not a common password, nor your name or email.")
    if submitted:
        if not first:
            middle.error("Enter a new password.")
        elif first != second:
            middle.error("The two passwords differ: type the same one twice.")
        else:
            anonymous = ApiClient(config, None)
            try:
                anonymous.set_password(link_token, first)
            except ApiError as err:
                middle.error(escape(err.message))
            else:
                st.query_params.pop("reset", None)
                st.session_state["sign_in_notice"] = "Your password is set. Sign in with your email and it."
                st.rerun()
            finally:
                anonymous.close()
    st.stop()
