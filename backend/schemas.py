"""Pydantic request and response models: the API contract (and its OpenAPI document)."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from backend.models import UploadRole

MAX_SEED = 2**53 - 1  # exact in JavaScript and JSON everywhere; well inside ComfyUI's 0..2**64-1
Sampler = Literal[
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_3m_sde",
    "ddim",
    "uni_pc",
    "lcm",
]
Scheduler = Literal["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The same rules as `_clean_text` and `_not_blank`, for the OpenAPI document (the validators keep their
# plainer messages): no control characters; a prompt has something besides spaces.
_TEXT = r"[^\x00-\x08\x0b-\x1f\x7f-\x9f]*"
NEGATIVE_PATTERN = f"^{_TEXT}$"
PROMPT_PATTERN = rf"^{_TEXT}[^\s\x00-\x1f\x7f-\x9f]{_TEXT}$"
STYLE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_ENTITY_ID = re.compile(ID_PATTERN)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def is_entity_id(value: str) -> bool:
    """A well-formed id (a lower-case UUID): anything else is looked up nowhere, it is simply not found."""
    return bool(_ENTITY_ID.match(value))


def _clean_text(v: str) -> str:
    v = unicodedata.normalize("NFC", v)
    if _CONTROL.search(v):
        raise ValueError("must not contain control characters")
    return v.strip()


def _not_blank(v: str) -> str:
    if not v:
        raise ValueError("must not be empty or only spaces")
    return v


def _integral(v: Any) -> Any:
    """JSON has one number type: `768.0` is the integer 768 (as JSON Schema's `integer` says)."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _iso_day(v: Any) -> Any:
    """A day as the schema's `format: date` says, YYYY-MM-DD (pydantic alone reads `12.5` as a timestamp)."""
    if isinstance(v, str) and not _DAY.fullmatch(v):
        raise ValueError("must be a day, YYYY-MM-DD")
    return v


def _multiple_of_8(v: int) -> int:
    if v % 8:
        raise ValueError(f"must be a multiple of 8 (got {v}; try {round(v / 8) * 8})")
    return v


Prompt = Annotated[
    str,
    Field(min_length=1, max_length=2000, json_schema_extra={"pattern": PROMPT_PATTERN}),
    AfterValidator(_clean_text),
    AfterValidator(_not_blank),
]
Negative = Annotated[
    str, Field(max_length=2000, json_schema_extra={"pattern": NEGATIVE_PATTERN}), AfterValidator(_clean_text)
]
Day = Annotated[date, BeforeValidator(_iso_day)]
# multipleOf in the schema only: `_multiple_of_8` says which sizes are near.
Side = Annotated[
    int, Field(ge=256, le=1024, json_schema_extra={"multipleOf": 8}), AfterValidator(_multiple_of_8)
]
_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"
# A label (an API key's name): one line, printable, not blank; the pattern says so in the schema too.
Label = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=rf"^{_PRINTABLE}*[^\s\x00-\x1f\x7f-\x9f]{_PRINTABLE}*$"),
    AfterValidator(_clean_text),
]
EntityId = Annotated[str, Field(pattern=ID_PATTERN, description="a UUID")]


class JobParams(BaseModel):
    """What a render is made of; stored with the job and with every image."""

    # The rule `_sketch_needs_upload` checks, said in the schema too: a sketch job names its upload, a
    # text job none (absent or null).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "sketch"}}, "required": ["kind"]},
            "then": {"required": ["upload_id"], "properties": {"upload_id": {"type": "string"}}},
            "else": {"properties": {"upload_id": {"type": "null"}}},
        },
    )

    kind: Literal["text", "sketch"] = Field("text", description="text-to-image or sketch-to-image")
    prompt: Prompt = Field(description="the room, in words")
    negative_prompt: Negative = Field("", description="what to keep out of the render")
    style: str = Field("none", pattern=STYLE_PATTERN, description="a style id from /api/styles")
    width: Side = Field(768, description="256..1024, a multiple of 8")
    height: Side = Field(512, description="256..1024, a multiple of 8")
    steps: int = Field(25, ge=1, le=100)
    cfg: float = Field(7.0, ge=1.0, le=20.0, description="guidance scale")
    sampler: Sampler = "dpmpp_2m"
    scheduler: Scheduler = "karras"
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="null: a random seed, stored on the job")
    num_images: int = Field(1, ge=1, le=4)
    lora_strength: float | None = Field(None, ge=0.0, le=2.0, description="null: the style's default")
    upload_id: EntityId | None = Field(None, description="the sketch (POST /api/uploads); sketch jobs only")
    sketch_strength: float = Field(0.9, ge=0.0, le=2.0, description="how strictly the render follows it")

    _integral = field_validator("width", "height", "steps", "seed", "num_images", mode="before")(_integral)

    @model_validator(mode="after")
    def _sketch_needs_upload(self) -> JobParams:
        if self.kind == "sketch" and not self.upload_id:
            raise ValueError("upload_id is required for a sketch job")
        if self.kind == "text" and self.upload_id:
            raise ValueError("upload_id is only for sketch jobs (kind 'sketch')")
        return self


class JobCreate(JobParams):
    """POST /api/jobs."""

    webhook_url: str | None = Field(
        None,
        max_length=2000,
        description=(
            "POSTed (Standard Webhooks, signed) when the job ends; https to a public address, unless "
            "the server's allow-list says otherwise. Not part of the render's params."
        ),
    )


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    new_seed: bool = Field(False, description="draw a new random seed instead of reusing the job's")


class ErrorInfo(BaseModel):
    code: str
    message: str


class Progress(BaseModel):
    value: int
    max: int


class ImageOut(BaseModel):
    id: str
    index: int
    width: int
    height: int
    seed: int
    size_bytes: int
    url: str = Field(description="full-size PNG (add ?download=1 for an attachment)")
    thumbnail_url: str


class Notice(BaseModel):
    """Why a queued job is not starting yet, for the designer."""

    code: str = Field(
        description=(
            "server_down: every ComfyUI server of the job's kind is unreachable; cannot_run: no server has "
            "every node class and model file the job's template needs (`missing` says which, where)"
        )
    )
    message: str
    servers: list[str] = Field(description="host:port of each server concerned")
    missing: list[str] = Field(
        default_factory=list, description="cannot_run: what each server lacks ('class X on host:port')"
    )


class TemplateRef(BaseModel):
    """The template a job runs, and which version of it."""

    name: str
    version: int | None = Field(None, description="null: a job older than templates")


class PassOut(BaseModel):
    """An intermediate image of the job (a pass its template declares, labelled), not one of its renders."""

    id: str
    node_id: str | None
    label: str | None
    width: int
    height: int
    url: str
    thumbnail_url: str


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    kind: str
    style: str
    params: dict[str, Any] = Field(description="the exact settings, seed included")
    seed: int
    queue_position: int | None = Field(None, description="1 = next to start; null once it runs")
    progress: Progress
    error: ErrorInfo | None = None
    images: list[ImageOut]
    attempts: int
    retry_of: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events_url: str
    notice: Notice | None = Field(
        None, description="set while a queued job waits on a server that is down, or that no server can run"
    )
    template: TemplateRef | None = Field(None, description="the template and version the job runs")
    passes: list[PassOut] = Field(default_factory=list, description="intermediate images (role pass)")
    favourite: bool | None = Field(None, description="marked as a favourite (set in lists: GET /api/jobs)")
    projects: list[str] | None = Field(None, description="ids of the projects it is filed in (set in lists)")
    _lane: str | None = PrivateAttr(None)  # what the job is claimed by (its notice is judged by it)

    @property
    def lane(self) -> str | None:
        return self._lane


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next (older) page")


class CutoutOut(BaseModel):
    """How a product upload was cut out of its photo."""

    method: Literal["model", "alpha"] = Field(
        description="model: the background-removal network's matte; alpha: the PNG's own transparency"
    )
    threshold: int | None = Field(
        description="matte values below it transparent, the rest opaque (null: soft)"
    )
    erode_px: int = Field(description="the edge pulled in by this many pixels")
    foreground: float = Field(description="share of the frame that is product")


MAX_ERODE_PX = 20  # a fringe of background is a few pixels; more eats the product


class CutoutAdjust(BaseModel):
    """New adjustments of a product's cut-out (absolute, not relative to the upload's current ones)."""

    model_config = ConfigDict(extra="forbid")

    threshold: int | None = Field(
        None, ge=1, le=254, description="matte values below it transparent, the rest opaque (null: soft edge)"
    )
    erode_px: int = Field(0, ge=0, le=MAX_ERODE_PX, description="pull the edge in by this many pixels")


class UploadOut(BaseModel):
    id: str
    role: UploadRole = Field(UploadRole.sketch, description="what the image is for")
    width: int
    height: int
    size_bytes: int
    dark_lines: bool = Field(description="dark lines on light paper: inverted before ControlNet")
    created_at: datetime
    url: str
    preview_url: str = Field(
        description=(
            "a sketch as ControlNet gets it; a product's cut-out on a checkerboard; a photo cropped to the "
            "render size (?width=&height=)"
        )
    )
    cutout: CutoutOut | None = Field(None, description="a product: how it was cut out")
    derived_from: str | None = Field(None, description="an adjusted cut-out: the product upload it adjusts")
    coverage: float | None = Field(None, description="a mask: the share of the image it covers (0..1)")


class StyleAvailability(BaseModel):
    """Whether some ComfyUI server has every file a render of one kind in this style loads."""

    available: bool = True
    code: str | None = Field(None, description="style_unavailable (its LoRA) or models_missing")
    reason: str | None = Field(None, description="the missing files and the servers, for people")
    missing: list[str] = Field(default_factory=list, description="file names")
    servers: list[str] = Field(default_factory=list, description="host:port of each server lacking them")


class StyleOut(BaseModel):
    id: str
    name: str
    description: str
    trigger_words: list[str]
    strength_model: float
    strength_clip: float
    has_lora: bool
    version: str
    preview_url: str
    available: bool = Field(True, description="false: some job kind cannot render it now (see `kinds`)")
    unavailable_reason: str | None = None
    kinds: dict[str, StyleAvailability] = Field(
        default_factory=dict, description="per job kind (text, sketch): can it render now, and if not why"
    )


class DesignerOut(BaseModel):
    id: str
    name: str
    active_jobs: int
    max_active_jobs: int
    role: Literal["designer", "lead", "admin"] = Field("designer", description="what the designer may do")


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


class ApiKeyCreate(BaseModel):
    name: Label = Field(description="what the key is for, e.g. 'CMS'")
    scopes: list[Literal["read", "render"]] = Field(
        min_length=1, max_length=2, description="read: GET jobs, images, events, styles; render: also start"
    )
    rate_limit_per_minute: int | None = Field(
        None, ge=1, description="lower than the deployment's API_KEY_RATE_PER_MINUTE (null: that)"
    )
    renders_per_day: int | None = Field(
        None, ge=1, description="lower than the deployment's API_KEY_RENDERS_PER_DAY (null: that)"
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="the key's public start; the rest is never shown again")
    scopes: list[str]
    rate_limit_per_minute: int
    renders_per_day: int
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None = Field(description="when the key last authenticated a request")


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself: shown this once, store it now")


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


class WebhookAttempt(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None = Field(None, description="the receiver's answer; null: none (see error)")
    error: str | None = None
    duration_ms: int


class WebhookDeliveryOut(BaseModel):
    id: str = Field(description="the webhook-id header: the same on every attempt, to deduplicate by")
    event_type: str = Field(description="job.succeeded, job.failed or job.cancelled")
    url: str
    status: Literal["pending", "sending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="while pending: when it is tried again")
    created_at: datetime
    delivered_at: datetime | None
    history: list[WebhookAttempt] = Field(description="the latest attempts, oldest first")


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryOut]


class ErrorDetail(BaseModel):
    field: str | None = Field(None, description="the field concerned (validation errors)")
    message: str | None = None
    type: str | None = None

    model_config = ConfigDict(extra="allow")


class ErrorObject(BaseModel):
    code: str = Field(description="stable snake_case, for programs")
    message: str = Field(description="a sentence, for people")
    details: list[ErrorDetail]


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx body."""

    error: ErrorObject
