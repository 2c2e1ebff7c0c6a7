"""Backend settings: environment variables and `.env`, validated at start-up.

One `Settings` object per process, built by the entry point (`get_settings()`); code below receives it.
Defaults are the embedded stack (`make run`): SQLite file, emulator on 8188/8189, local storage.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.graphs import WORKFLOWS_DIR

JobKindName = Literal["text", "sketch"]


@dataclass(frozen=True)
class ComfyInstance:
    """One ComfyUI server the dispatcher may use, and which job kinds it runs."""

    url: str
    serves: frozenset[str]  # job kinds

    @property
    def name(self) -> str:
        return self.url.removeprefix("http://").removeprefix("https://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- database -------------------------------------------------------------------------------
    database_url: str = Field(
        "sqlite+aiosqlite:///var/studio.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+psycopg://user@host/db",
    )
    db_pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connections per process")
    sqlite_busy_timeout_ms: int = Field(5000, ge=0, description="how long SQLite waits for a lock")
    database_password_secret_arn: str = Field(
        "", description="Secrets Manager secret with DATABASE_URL's password (read at start-up)"
    )
    database_password_ssm_parameter: str = Field(
        "", description="or an SSM SecureString with that password (read at start-up)"
    )

    # --- ComfyUI ----------------------------------------------------------------------------------
    comfy_ui_address: str = Field(
        "127.0.0.1",
        description=(
            "ML hosts, comma-separated. `host` = text on COMFY_TEXT_PORT and sketch on COMFY_SKETCH_PORT; "
            "`host:port` = one instance for both kinds; `text=host:port` / `sketch=host:port` = one kind. "
            "Empty: no ComfyUI (SageMaker only)."
        ),
    )
    comfy_text_port: int = Field(8188, ge=1, le=65535)
    comfy_sketch_port: int = Field(8189, ge=1, le=65535)
    comfy_prequeue: int = Field(1, ge=0, le=8, description="prompts queued behind the running one")
    comfy_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout for one ComfyUI request")
    comfy_models_ttl_s: float = Field(
        5.0, gt=0, description="how long the API trusts its last look at each ComfyUI's models and health"
    )
    checkpoint_name: str = "interiordesignsuperm_v2.safetensors"
    controlnet_name: str = "control_v11p_sd15_scribble.safetensors"
    workflows_dir: Path = Field(WORKFLOWS_DIR, description="API-format graphs; default the contract's")
    style_manifest: Path | None = Field(None, description="style manifest; default loras/styles.toml")
    models_marker: Path | None = Field(
        None, description="model sync marker file checked by /readyz (unset: no check)"
    )
    template_dry_run_address: str = Field(
        "",
        description="host:port of the sandbox emulator templates are dry-run on ('' = no dry run, a warning)",
    )
    models_manifest: Path | None = Field(
        None, description="base models manifest; default mlserver/models.toml"
    )
    models_bucket: str = Field(
        "", description="bucket of models/ and loras/ where added models go ('' = adding models is off)"
    )
    models_added_prefix: str = Field("models/added/", description="key prefix of uploaded models")
    rembg_model_path: Path = Field(
        Path("var/models/rembg/u2net.onnx"),
        description=(
            "the background-removal model of product uploads (u2net ONNX), synced from the models bucket "
            "(model_sync --folder rembg); absent: product photos are refused with 503, nothing downloaded"
        ),
    )
    cutout_threads: int = Field(
        2, ge=1, le=64, description="CPU threads one background removal may use (onnxruntime intra-op)"
    )
    model_upload_max_bytes: int = Field(
        16 * 1024**3, ge=1024, description="largest model a lead may add (upload or S3 object)"
    )

    # --- dispatcher -------------------------------------------------------------------------------
    dispatcher_poll_s: float = Field(
        0.25, gt=0, description="how often an idle dispatcher looks for jobs besides being notified"
    )
    heartbeat_interval_s: float = Field(2.0, gt=0)
    stall_after_s: float = Field(15.0, gt=0, description="a running job without heartbeat is adopted")
    max_attempts: int = Field(3, ge=1, description="submissions of one job before it fails")
    progress_min_interval_s: float = Field(0.2, ge=0, description="throttle for stored progress events")
    comfy_retry_max_s: float = Field(30.0, gt=0, description="cap of the back-off while ComfyUI is down")

    # --- SageMaker async overflow ------------------------------------------------------------------
    dispatch_routing: Literal["comfy_first", "comfy_only", "sagemaker_only"] = Field(
        "comfy_first",
        description=(
            "comfy_first: fill the ComfyUI instances, overflow to SageMaker past the backlog threshold; "
            "comfy_only; sagemaker_only. No COMFY_UI_ADDRESS with an endpoint set: SageMaker only."
        ),
    )
    sagemaker_endpoint_name: str = Field("", description="async endpoint for overflow renders ('' = off)")
    sagemaker_notify_queue_url: str = Field(
        "", description="SQS queue fed by the endpoint's SNS topics ('' = S3 checks only)"
    )
    sagemaker_bucket: str = Field("", description="bucket of requests and results (the endpoint's)")
    sagemaker_jobs_prefix: str = Field("jobs/", description="request inputs: <prefix><job_id>/input.json")
    sagemaker_output_prefix: str = Field("jobs-output/", description="the endpoint's S3OutputPath key")
    sagemaker_failure_prefix: str = Field("jobs-failure/", description="the endpoint's S3FailurePath key")
    sagemaker_region: str = Field("", description="AWS region of the endpoint ('' = S3_REGION)")
    aws_endpoint_url: str | None = Field(
        None, description="S3 and SQS endpoint of the SageMaker path (tests)"
    )
    sagemaker_runtime_endpoint_url: str | None = Field(
        None, description="sagemaker-runtime endpoint (tests: the SageMaker async stand-in)"
    )
    sagemaker_invocation_timeout_s: int = Field(900, ge=1, le=3600, description="InvocationTimeoutSeconds")
    sagemaker_request_ttl_s: int = Field(
        3600, ge=1, le=21600, description="RequestTTLSeconds (AWS takes 60 to 21600; tests go lower)"
    )
    sagemaker_max_in_flight: int = Field(8, ge=1, le=1000, description="jobs at SageMaker at once")
    sagemaker_overflow_backlog: int = Field(
        4, ge=0, description="queued jobs beyond the ComfyUI slots before overflowing to SageMaker"
    )
    sagemaker_poll_s: float = Field(15.0, gt=0, description="S3 check of each job's result (SQS fallback)")
    sagemaker_inventory: Path | None = Field(
        None,
        description=(
            "JSON inventory of the endpoint's container, recorded at deploy ({nodes, models}): the template "
            "lanes it covers (unset: only the built-ins)"
        ),
    )

    # --- storage ----------------------------------------------------------------------------------
    storage_backend: Literal["local", "s3"] = "local"
    data_dir: Path = Field(Path("var/data"), description="local storage root")
    s3_bucket: str = ""
    s3_prefix: str = "renders/"
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (tests: moto)")
    s3_region: str = "us-east-1"
    s3_presign_ttl_s: int = Field(300, ge=10, le=3600)

    # --- designers and limits ---------------------------------------------------------------------
    demo_designer_name: str = "demo"
    demo_designer_token: str = Field("studio-demo-token", description="empty: no demo designer")
    demo_designer_role: Literal["designer", "lead", "admin"] = Field(
        "lead", description="the demo designer's role (lead: may publish templates)"
    )
    max_active_jobs_per_designer: int = Field(20, ge=1)
    max_uploads_per_hour: int = Field(120, ge=1)
    upload_max_bytes: int = Field(15 * 1024 * 1024, ge=1024)
    upload_max_pixels: int = Field(36_000_000, ge=4096)
    upload_max_side: int = Field(2048, ge=256, description="uploads are scaled down to this side")

    # --- HTTP ---------------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(2, ge=1, le=64)
    event_poll_s: float = Field(
        0.25, gt=0, description="how often the API looks for new job events besides being notified"
    )
    log_level: str = "INFO"

    # --- API keys -----------------------------------------------------------------------------------
    api_key_rate_per_minute: int = Field(
        60, ge=1, description="requests a minute per API key, all API processes together (a key may set less)"
    )
    api_key_renders_per_day: int = Field(
        500, ge=1, description="render requests a UTC day per API key (a key may set less)"
    )
    # --- accounts: sessions, passwords, identity provider ---------------------------------------------
    session_idle_s: int = Field(
        8 * 3600, ge=60, le=7 * 86400, description="a browser session ends this long after its last request"
    )
    session_max_s: int = Field(
        24 * 3600, ge=60, le=30 * 86400, description="a browser session ends this long after sign-in anyway"
    )
    password_min_length: int = Field(12, ge=8, le=128, description="shortest password a designer may set")
    sign_in_max_failures: int = Field(
        5, ge=1, le=100, description="failed password sign-ins of one email before it is locked"
    )
    sign_in_lockout_s: float = Field(
        30.0, gt=0, description="the first lockout; each further failure doubles it (SIGN_IN_LOCKOUT_MAX_S)"
    )
    sign_in_lockout_max_s: float = Field(900.0, gt=0, description="cap of the lockout's back-off")
    password_reset_ttl_s: int = Field(
        86400, ge=60, le=14 * 86400, description="life of an invitation or password-reset link"
    )
    studio_url: str = Field(
        "http://localhost:8501", description="the studio's address, for the links an admin hands out"
    )
    oidc_issuer: str = Field(
        "", description="OpenID Connect issuer (its /.well-known/openid-configuration); '' = no OIDC sign-in"
    )
    oidc_client_id: str = Field(
        "", description="the studio's client id at the issuer: the ID token's audience"
    )
    oidc_allowed_domains: str = Field(
        "", description="comma-separated email domains whose verified users get an account on first sign-in"
    )
    oidc_default_role: Literal["designer", "lead", "admin"] = Field(
        "designer", description="role of an account made on first sign-in"
    )
    oidc_jwks_ttl_s: float = Field(3600.0, gt=0, description="how long the issuer's keys are trusted cached")
    # --- drop-in text2image and waiting for results ---------------------------------------------------
    dropin_prefix: str = Field("/dev", description="path prefix of the drop-in `POST {prefix}/text2image`")
    dropin_wait_s: float = Field(
        25.0, gt=0, le=600, description="how long text2image waits for the render before answering 202"
    )
    prefer_wait_max_s: float = Field(
        60.0, gt=0, le=600, description="cap of `Prefer: wait=N` on POST /api/jobs"
    )
    image_url_secret: str = Field(
        "",
        validate_default=True,
        description="HMAC key of signed image URLs ('' = a random one per server: set it with several)",
    )
    image_url_ttl_s: int = Field(3600, ge=10, le=7 * 86400, description="life of a signed image URL")
    # --- webhooks -----------------------------------------------------------------------------------
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="whsec_<base64 key> signing every delivery (Standard Webhooks); empty: webhooks refused",
    )
    webhook_allow: str = Field(
        "",
        description=(
            "comma-separated CIDRs and host names a webhook may target although private, loopback or "
            "link-local (and over plain http); empty: public https targets only"
        ),
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=60, description="one delivery attempt, connect to answer")
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="attempts before a delivery is failed")
    webhook_backoff_s: float = Field(5.0, gt=0, description="first retry delay; doubles, with jitter")
    webhook_backoff_max_s: float = Field(3600.0, gt=0, description="cap of the retry delay")
    webhook_lease_s: float = Field(
        60.0, gt=0, description="a claimed delivery whose sender died is claimed again after this"
    )
    webhook_poll_s: float = Field(1.0, gt=0, description="how often the delivery worker looks for due ones")
    # --- hardening: body caps, security headers -------------------------------------------------------
    request_body_max_bytes: int = Field(
        64 * 1024, ge=1024, description="largest body of a JSON route (uploads: UPLOAD_MAX_BYTES)"
    )
    forwarded_trusted_ips: str = Field(
        "127.0.0.1",
        description=(
            "proxies whose X-Forwarded-Proto/For gunicorn believes (HSTS over TLS): comma-separated "
            "addresses or networks, or * when only the load balancer can reach the API"
        ),
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        if v.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + v.removeprefix("sqlite:///")
        if v.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + v.split("://", 1)[1]
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://")):
            raise ValueError("DATABASE_URL must be sqlite+aiosqlite:///... or postgresql+psycopg://...")
        return v

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        return f"{v}/" if v else ""

    @field_validator("models_added_prefix")
    @classmethod
    def _models_prefix(cls, v: str) -> str:
        v = v.strip("/")
        if not v.startswith("models"):
            raise ValueError("MODELS_ADDED_PREFIX must be under models/ (what the ML hosts may read)")
        return f"{v}/"

    @field_validator("sagemaker_jobs_prefix", "sagemaker_output_prefix", "sagemaker_failure_prefix")
    @classmethod
    def _sagemaker_prefix(cls, v: str) -> str:
        v = v.strip("/")
        return f"{v}/" if v else ""

    @field_validator("dropin_prefix")
    @classmethod
    def _dropin_prefix(cls, v: str) -> str:
        v = v.strip("/")
        return f"/{v}" if v else ""

    @field_validator("image_url_secret")
    @classmethod
    def _image_url_secret(cls, v: str) -> str:
        # Unset: drawn once per server; gunicorn's workers inherit their master's settings (get_settings()
        # is cached before the fork), so they agree. Several servers must share a set one.
        return v or secrets.token_urlsafe(32)

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, v: SecretStr) -> SecretStr:
        raw = v.get_secret_value()
        if raw and not _is_whsec(raw):
            raise ValueError("WEBHOOK_SECRET must be whsec_ followed by a base64 key of 24 to 64 bytes")
        return v

    @model_validator(mode="after")
    def _lease_outlives_an_attempt(self) -> Settings:
        # A lease that ends while its attempt is still waiting would let a second sender send it too.
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError("WEBHOOK_LEASE_S must be longer than WEBHOOK_TIMEOUT_S")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_issuer:
            if not self.oidc_client_id:
                raise ValueError("OIDC_CLIENT_ID must be set with OIDC_ISSUER (the ID tokens' audience)")
            host = urlsplit(self.oidc_issuer).hostname or ""
            if not self.oidc_issuer.startswith("https://") and host not in ("127.0.0.1", "localhost", "::1"):
                raise ValueError(
                    "OIDC_ISSUER must be an https:// URL (plain http on loopback only, for tests)"
                )
        if self.session_idle_s > self.session_max_s:
            raise ValueError("SESSION_IDLE_S must not be longer than SESSION_MAX_S")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def comfy_instances(self) -> list[ComfyInstance]:
        return parse_comfy_address(self.comfy_ui_address, self.comfy_text_port, self.comfy_sketch_port)


def _is_whsec(value: str) -> bool:
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return False
    return value.startswith("whsec_") and 24 <= len(key) <= 64


def _url(hostport: str) -> str:
    return hostport if hostport.startswith(("http://", "https://")) else f"http://{hostport}"


def parse_comfy_address(value: str, text_port: int, sketch_port: int) -> list[ComfyInstance]:
    """`COMFY_UI_ADDRESS` → instances (see the field's description)."""
    instances: list[ComfyInstance] = []
    for raw in (part.strip() for part in value.split(",")):
        if not raw:
            continue
        if raw.startswith(("text=", "sketch=")):
            kind, hostport = raw.split("=", 1)
            instances.append(ComfyInstance(_url(hostport), frozenset({kind})))
        elif raw.rsplit(":", 1)[-1].isdigit() and not raw.endswith("]"):
            instances.append(ComfyInstance(_url(raw), frozenset({"text", "sketch"})))
        else:
            host = raw.removeprefix("http://")
            instances.append(ComfyInstance(_url(f"{host}:{text_port}"), frozenset({"text"})))
            instances.append(ComfyInstance(_url(f"{host}:{sketch_port}"), frozenset({"sketch"})))
    return instances


@lru_cache
def get_settings() -> Settings:
    """The process's settings, with the secrets they reference read (`secret_sources`)."""
    from backend.secret_sources import resolve_secrets  # it types its argument with Settings

    return resolve_secrets(Settings())
