"""SQLAlchemy 2 tables: Designer, ApiKey, Upload (and its UploadRole), Template, TemplateVersion, Job,
JobEvent, Image, WebhookDelivery, ModelFile; the accounts' SignInSession, SignInThrottle, PasswordReset and
AuditEvent.

The schema only changes through Alembic (`backend/migrations/`). Only `job_queue.py` (and `claims.py`, for
the claim) changes a job's status.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    desc,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class JobKind(enum.StrEnum):
    """The built-in templates' names, which are also their lanes (a custom template's jobs carry its name)."""

    text = "text"
    sketch = "sketch"


class Role(enum.StrEnum):
    """What a designer account may do: a lead also publishes templates and adds models; an admin also
    manages accounts."""

    designer = "designer"
    lead = "lead"
    admin = "admin"

    def at_least(self, other: Role) -> bool:
        return ROLE_RANK[self] >= ROLE_RANK[other]


ROLE_RANK = {Role.designer: 0, Role.lead: 1, Role.admin: 2}


class UploadRole(enum.StrEnum):
    """What an uploaded image is for: how it was checked and processed, and what a template input takes."""

    sketch = "sketch"  # line art: greyscale, inverted for ControlNet when dark lines on light paper
    product = "product"  # a product photo cut out of its background: RGBA, the alpha is the mask
    style_photo = "style_photo"  # a photograph of a room in the wanted style (refused when it is a sketch)
    composition = "composition"  # a layout reference image, RGB
    photo = "photo"  # a room photo to redesign, RGB, EXIF orientation applied
    mask = "mask"  # a region of a photo (white in): RGBA, alpha = 1 - mask; its coverage kept in `cutout`


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Designer(Base):
    __tablename__ = "designers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.designer, server_default=Role.designer.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # sign-in (migration 0008): an email and password, or an identity provider's subject ("issuer sub")
    email: Mapped[str | None] = mapped_column(String(254), unique=True, default=None, doc="lower case")
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None, doc="argon2id (pwdlib)")
    oidc_subject: Mapped[str | None] = mapped_column(String(400), unique=True, default=None)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(default=None)
    # quotas set by an admin (NULL: the deployment's MAX_ACTIVE_JOBS_PER_DESIGNER, MAX_UPLOADS_PER_HOUR)
    max_active_jobs: Mapped[int | None] = mapped_column(Integer, default=None)
    max_uploads_per_hour: Mapped[int | None] = mapped_column(Integer, default=None)


class Upload(Base):
    """An image a designer uploaded, as stored (`storage_key`, content-named by `sha256`). Immutable: a
    product's adjusted cut-out is a new upload `derived_from` the one whose photo and matte it reuses."""

    __tablename__ = "uploads"
    __table_args__ = (
        UniqueConstraint("designer_id", "role", "sha256", name="uq_uploads_designer_role_sha256"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200))
    original_name: Mapped[str] = mapped_column(String(200), default="")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    dark_lines: Mapped[bool] = mapped_column(Boolean, doc="dark lines on light paper (to be inverted)")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    role: Mapped[str] = mapped_column(
        String(20), default=UploadRole.sketch, server_default=UploadRole.sketch.value, doc="an UploadRole"
    )
    source_key: Mapped[str | None] = mapped_column(
        String(200), default=None, doc="product: the photo before the cut-out (RGB PNG)"
    )
    matte_key: Mapped[str | None] = mapped_column(
        String(200), default=None, doc="product: the matte (the model's, or the PNG's own alpha), L PNG"
    )
    cutout: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, default=None, doc="product: method, threshold, erode_px, foreground (share of the frame)"
    )
    derived_from: Mapped[str | None] = mapped_column(
        ForeignKey("uploads.id"), default=None, doc="an adjusted cut-out: the product upload it adjusts"
    )


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("designer_id", "idempotency_key"),
        # queue_position counts the queued jobs of a kind ahead of one: covered, id included
        Index("ix_jobs_queue", "status", "lane", "priority", "created_at", "id"),
        # claim_next's order (see migration 0002): the head of the queue without a sort
        Index("ix_jobs_claim", "status", desc("priority"), "created_at", "id"),
        Index("ix_jobs_designer_created", "designer_id", "created_at"),
        Index("ix_jobs_designer_status", "designer_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"))
    kind: Mapped[str] = mapped_column(String(40), doc="the template's name (text, sketch, or a custom one)")
    lane: Mapped[str] = mapped_column(String(40), doc="what a claim filters on (a built-in's: its name)")
    template_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("template_versions.id"), default=None, doc="the version the job runs (NULL: before 0006)"
    )
    status: Mapped[str] = mapped_column(String(12), default=JobStatus.queued)
    style: Mapped[str] = mapped_column(String(32))
    lora_name: Mapped[str] = mapped_column(String(200), default="", doc="LoRA file the job loads ('' = none)")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    params_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    upload_id: Mapped[str | None] = mapped_column(ForeignKey("uploads.id"), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    retry_of: Mapped[str | None] = mapped_column(String(36), default=None)
    priority: Mapped[int] = mapped_column(Integer, default=0)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    # dispatch: which dispatcher holds the job, where it runs, how often it was submitted
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    executor: Mapped[str | None] = mapped_column(String(20), default=None)
    instance: Mapped[str | None] = mapped_column(String(200), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    not_before: Mapped[datetime | None] = mapped_column(default=None, doc="back-off after a failed submit")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    external: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="executor bookkeeping")

    progress_value: Mapped[int] = mapped_column(Integer, default=0)
    progress_max: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    graph: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, default=None, doc="the filled graph, stored at creation: every attempt sends exactly it"
    )
    webhook_url: Mapped[str | None] = mapped_column(
        Text, default=None, doc="where the job's end is POSTed (backend.webhooks)"
    )

    images: Mapped[list[Image]] = relationship(
        back_populates="job", order_by="Image.index", lazy="selectin", cascade="all, delete-orphan"
    )

    def __init__(self, **values: Any) -> None:
        # A job made without a lane is a built-in's, whose lane is its kind.
        values.setdefault("lane", values.get("kind"))
        super().__init__(**values)


class Template(Base):
    """A named render (a ComfyUI graph with declared inputs): its versions are immutable; `current_version`
    is what designers run (NULL: a draft never published, seen by its owner only)."""

    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("designers.id"), default=None)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    current_version: Mapped[int | None] = mapped_column(Integer, default=None)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
    preview_image_id: Mapped[str | None] = mapped_column(String(36), default=None)
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None, doc="unpublished declaration")
    draft_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TemplateVersion(Base):
    """One published version: immutable. `spec` = graph + declared inputs + outputs; `needs` = node
    classes and model files per folder; `lane` = where its jobs are claimed (backend.lanes)."""

    __tablename__ = "template_versions"
    __table_args__ = (
        UniqueConstraint("template_id", "version", name="uq_template_versions_template_version"),
        UniqueConstraint("template_id", "content_sha256", name="uq_template_versions_template_content"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id"))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    needs: Mapped[dict[str, Any]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    lane: Mapped[str] = mapped_column(String(40), index=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(ForeignKey("designers.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobPreview(Base):
    """The newest live preview of a running job: one row per job, overwritten at each relayed sampler
    step, deleted when the job ends (`backend/previews.py`). Never a result: images are in `images`."""

    __tablename__ = "job_previews"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    mime: Mapped[str] = mapped_column(String(20))
    image: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (Index("ix_images_designer_created", "designer_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"))
    index: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(200))
    thumb_key: Mapped[str] = mapped_column(String(200))
    thumb_ready: Mapped[bool] = mapped_column(
        Boolean,
        default=True,
        server_default=true(),
        doc="the thumbnail is stored (made after the job succeeded)",
    )
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, doc="everything needed to redo the render")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    render_s: Mapped[float] = mapped_column(Float, default=0.0)
    role: Mapped[str] = mapped_column(
        String(8), default="result", server_default="result", doc="result, or pass (an intermediate image)"
    )
    node_id: Mapped[str | None] = mapped_column(String(40), default=None, doc="the SaveImage node")
    label: Mapped[str | None] = mapped_column(String(100), default=None, doc="a pass's label")

    job: Mapped[Job] = relationship(back_populates="images")


class ApiKey(Base):
    """An integration's key: only the SHA-256 of its secret is stored. The rate and quota counters sit
    on the row itself (the window they count and the count in it), so one conditional UPDATE per request
    checks the key, counts it and stamps its last use (`api_keys.consume`)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), doc="the key's public start, shown in listings")
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(40), doc="comma-separated: read, render")
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    renders_per_day: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    rate_window: Mapped[int] = mapped_column(BigInteger, default=0, doc="minutes since the epoch")
    rate_count: Mapped[int] = mapped_column(Integer, default=0)
    quota_day: Mapped[int] = mapped_column(Integer, default=0, doc="days since the epoch (UTC)")
    quota_count: Mapped[int] = mapped_column(Integer, default=0)


class WebhookDelivery(Base):
    """One event of a job for its webhook: the outbox row, written with the job's terminal transition
    (`backend.webhooks`), then claimed, sent and retried by a dispatcher's delivery worker."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, doc="the webhook-id header: msg_...")
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(
        String(12), default="pending", doc="pending, sending, delivered, failed"
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None, doc="a sender that died lets go here")
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, doc="one entry per attempt")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class SignInSession(Base):
    """A signed-in browser's backend session (`backend.sessions`): only the SHA-256 of its token is
    stored. It lives `SESSION_IDLE_S` past its last use, never past `max_expires_at`."""

    __tablename__ = "sign_in_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    method: Mapped[str] = mapped_column(String(16), doc="password or oidc")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    max_expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(40), default=None)


class SignInThrottle(Base):
    """Failed password sign-ins per email (known or not: the same answer either way), by its SHA-256."""

    __tablename__ = "sign_in_throttles"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PasswordReset(Base):
    """A one-time link an admin made (an invitation or a reset): only the SHA-256 of its token is stored."""

    __tablename__ = "password_resets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEvent(Base):
    """One line of the audit log (`backend.audit`): append-only, which triggers enforce on both databases
    (migration 0008). Actor and target are copied, not foreign keys: the log outlives what it names."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_action_created", "action", "created_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(10), default="success", doc="success or failure")
    reason: Mapped[str] = mapped_column(String(100), default="")
    actor_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    actor_name: Mapped[str] = mapped_column(String(100), default="")
    target_type: Mapped[str] = mapped_column(String(40), default="")
    target_id: Mapped[str] = mapped_column(String(100), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ModelFile(Base):
    """A model file a lead added (by upload or S3 key), checked and pinned: the rows the bucket's added
    manifest (`models/manifest.added.json`) is written from, which the ML hosts sync."""

    __tablename__ = "model_files"
    __table_args__ = (UniqueConstraint("folder", "file", name="uq_model_files_folder_file"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    folder: Mapped[str] = mapped_column(String(64))
    file: Mapped[str] = mapped_column(String(200))
    s3_key: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    licence: Mapped[str] = mapped_column(String(100))
    format: Mapped[str] = mapped_column(String(16), doc="safetensors, or pickle (allowed by an admin)")
    tensors: Mapped[int | None] = mapped_column(Integer, default=None, doc="safetensors: tensors in it")
    added_by: Mapped[str | None] = mapped_column(ForeignKey("designers.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Projects and sharing have their own module; importing it here registers its tables on Base.metadata.
from backend import project_models  # noqa: E402, F401
