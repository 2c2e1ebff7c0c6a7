"""SQLAlchemy 2 tables: Designer, ApiKey, Upload, Job, JobEvent, Image, WebhookDelivery.

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
    text = "text"
    sketch = "sketch"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Designer(Base):
    __tablename__ = "designers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Upload(Base):
    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("designer_id", "sha256"),)

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


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("designer_id", "idempotency_key"),
        # queue_position counts the queued jobs of a kind ahead of one: covered, id included
        Index("ix_jobs_queue", "status", "kind", "priority", "created_at", "id"),
        # claim_next's order (see migration 0002): the head of the queue without a sort
        Index("ix_jobs_claim", "status", desc("priority"), "created_at", "id"),
        Index("ix_jobs_designer_created", "designer_id", "created_at"),
        Index("ix_jobs_designer_status", "designer_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"))
    kind: Mapped[str] = mapped_column(String(10))
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
    graph: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None, doc="the graph sent to ComfyUI")
    webhook_url: Mapped[str | None] = mapped_column(
        Text, default=None, doc="where the job's end is POSTed (backend.webhooks)"
    )

    images: Mapped[list[Image]] = relationship(
        back_populates="job", order_by="Image.index", lazy="selectin", cascade="all, delete-orphan"
    )


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
