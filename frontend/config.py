"""FrontendSettings: where the backend is (the UI talks to nothing else), how long a sign-in lasts and how
one signs in."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FrontendSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    backend_url: str = Field("http://127.0.0.1:8000", description="the backend API")
    backend_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout for one backend request")
    session_ttl_s: float = Field(
        12 * 3600, gt=0, description="a sign-in survives reloads for this long without activity"
    )
    oidc_provider_name: str = Field(
        "your identity provider", description='the provider on the sign-in button: "Sign in with <name>"'
    )
    token_sign_in: bool = Field(True, description="also offer signing in with a pasted designer token")
    gallery_page_size: int = Field(12, ge=1, le=100, description="renders per gallery page")


@lru_cache
def get_frontend_settings() -> FrontendSettings:
    return FrontendSettings()
