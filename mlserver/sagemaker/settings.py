"""The adapter's settings: environment variables (no .env file), overridden by command-line flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_COMFY_URL = "http://127.0.0.1:8188"
DEFAULT_PORT = 8080  # SageMaker sends /ping and /invocations to 8080
DEFAULT_INVOCATION_TIMEOUT_S = 900.0
DRAIN_GRACE_S = 30.0  # after SIGTERM: the current job may finish (or is interrupted) within this


class AdapterSettings(BaseSettings):
    """COMFY_URL, ADAPTER_HOST, ADAPTER_PORT, WARMUP (on/off), WARMUP_CHECKPOINT, INVOCATION_TIMEOUT_S,
    DRAIN_GRACE_S."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    comfy_url: str = Field(DEFAULT_COMFY_URL, pattern=r"^https?://")
    adapter_host: str = "0.0.0.0"
    adapter_port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    warmup: bool = True
    warmup_checkpoint: str = Field("", description="empty: txt2img.json's checkpoint")
    invocation_timeout_s: float = Field(DEFAULT_INVOCATION_TIMEOUT_S, gt=0)
    drain_grace_s: float = Field(DRAIN_GRACE_S, ge=0)
