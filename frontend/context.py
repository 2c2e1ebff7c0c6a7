"""What every page needs from the entry point: the settings and the signed-in designer's API client."""

from __future__ import annotations

import streamlit as st

from frontend.api_client import ApiClient
from frontend.config import FrontendSettings, get_frontend_settings


@st.cache_resource(max_entries=1000)
def _client(token: str, backend_url: str, timeout_s: float) -> ApiClient:
    return ApiClient(get_frontend_settings(), token)


def settings() -> FrontendSettings:
    return get_frontend_settings()


def client() -> ApiClient:
    """The API client of the signed-in designer (app.py stops the run before any page if nobody is)."""
    s = get_frontend_settings()
    return _client(st.session_state["token"], s.backend_url, s.backend_timeout_s)


def role() -> str:
    """The signed-in designer's role: designer, lead or admin (the backend decides; this only hides what
    the backend would refuse)."""
    return str(st.session_state.get("role") or "designer")


def is_lead() -> bool:
    """Leads and admins: templates, adding models."""
    return role() in ("lead", "admin")


def is_admin() -> bool:
    return role() == "admin"


def page_params() -> dict[str, str]:
    """Query parameters to carry across st.switch_page (it clears them otherwise)."""
    return {k: v for k in ("sid", "job", "compare") if (v := st.query_params.get(k))}
