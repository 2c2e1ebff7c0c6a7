"""The API's shapes as the client sees them: its own models, so the client ships without the backend.

Responses ignore fields they do not know (a newer server may add some); requests carry no rule of the
server's beyond types, so the server stays the one judge and its 422 comes back with per-field details.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ErrorDetail(_Shape):
    field: str = "body"
    message: str = ""
    type: str | None = None


class JobError(_Shape):
    code: str
    message: str


class Progress(_Shape):
    value: int
    max: int


class Image(_Shape):
    id: str
    index: int
    width: int
    height: int
    seed: int
    size_bytes: int
    url: str
    thumbnail_url: str


class Notice(_Shape):
    code: str
    message: str
    servers: list[str] = Field(default_factory=list)


class Job(_Shape):
    id: str
    status: JobStatus
    kind: str
    style: str
    params: dict[str, Any]
    seed: int
    queue_position: int | None = None
    progress: Progress
    error: JobError | None = None
    images: list[Image] = Field(default_factory=list)
    attempts: int = 0
    retry_of: str | None = None
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    events_url: str
    notice: Notice | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class JobPage(_Shape):
    items: list[Job]
    next_cursor: str | None = None


class Upload(_Shape):
    id: str
    width: int
    height: int
    size_bytes: int
    dark_lines: bool
    created_at: datetime
    url: str
    preview_url: str


class StyleAvailability(_Shape):
    available: bool = True
    code: str | None = None
    reason: str | None = None
    missing: list[str] = Field(default_factory=list)
    servers: list[str] = Field(default_factory=list)


class Style(_Shape):
    id: str
    name: str
    description: str = ""
    trigger_words: list[str] = Field(default_factory=list)
    strength_model: float = 1.0
    strength_clip: float = 1.0
    has_lora: bool = False
    version: str = ""
    preview_url: str
    available: bool = True
    unavailable_reason: str | None = None
    kinds: dict[str, StyleAvailability] = Field(default_factory=dict)


class Designer(_Shape):
    id: str
    name: str
    active_jobs: int
    max_active_jobs: int


class JobEvent(_Shape):
    """One message of a job's event stream. `position` messages (queue position, notice) have no id."""

    id: int | None = None
    job_id: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.type in FINAL_STATUSES


class JobRequest(BaseModel):
    """A render to start (POST /api/jobs). Unset fields take the server's defaults."""

    model_config = ConfigDict(extra="allow")

    prompt: str
    kind: Literal["text", "sketch"] = "text"
    negative_prompt: str | None = None
    style: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    seed: int | None = None
    num_images: int | None = None
    lora_strength: float | None = None
    upload_id: str | None = None
    sketch_strength: float | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body: the fields given, but None only for `seed` (a random one); any other None
        means the server's default, so it is left out."""
        given = self.model_dump(exclude_unset=True)
        return {k: v for k, v in given.items() if v is not None or k == "seed"}
