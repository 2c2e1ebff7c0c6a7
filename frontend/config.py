"""FrontendSettings: where the backend is (the UI talks to nothing else)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FrontendSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    backend_url: str = Field("http://127.0.0.1:8000", description="the backend API")
    backend_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout for one backend request")


@lru_cache
def get_frontend_settings() -> FrontendSettings:
    return FrontendSettings()
