"""The API's shapes as the client sees them: its own models, so the client ships without the backend.

Responses ignore fields they do not know (a newer server may add some); requests carry no rule of the
server's beyond types, so the server stays the one judge and its 422 comes back with per-field details.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ErrorDetail(_Shape):
    """One detail of an error: the field it concerns; a template's problem also names where it lies."""

    field: str = "body"
    message: str = ""
    type: str | None = None
    code: str | None = None
    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None
    instance: str | None = None


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


class PassImage(_Shape):
    """An intermediate pass of a template job (shown labelled under the result, not counted as a render)."""

    id: str
    url: str
    thumbnail_url: str | None = None
    width: int = 0
    height: int = 0
    label: str | None = None
    node_id: str | None = None


class TemplateRef(_Shape):
    """The template (and version) a job ran."""

    name: str
    version: int | None = None


class Notice(_Shape):
    code: str
    message: str
    servers: list[str] = Field(default_factory=list)


class Job(_Shape):
    id: str
    status: JobStatus
    kind: str
    style: str | None = None
    params: dict[str, Any]
    seed: int
    queue_position: int | None = None
    progress: Progress
    error: JobError | None = None
    images: list[Image] = Field(default_factory=list)
    passes: list[PassImage] = Field(default_factory=list)
    template: TemplateRef | None = None
    attempts: int = 0
    retry_of: str | None = None
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    events_url: str
    notice: Notice | None = None
    favourite: bool | None = Field(None, description="set in lists (list_jobs)")
    projects: list[str] | None = Field(None, description="ids of the projects it is filed in (in lists)")

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class Project(_Shape):
    id: str
    name: str
    client: str = ""
    room: str = ""
    created_at: datetime
    renders: int = 0
    cover_url: str | None = None


class ShareLink(_Shape):
    id: str
    title: str
    scope: Literal["project", "selection"]
    project_id: str | None = None
    image_ids: list[str] | None = None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    access_count: int = 0
    last_access_at: datetime | None = None
    active: bool
    url: str | None = Field(None, description="only in the answer that made it: the link to send")


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
    role: str | None = None  # designer, lead or admin (None: a server that does not say)


class LivePreview(_Shape):
    """The render forming: a sampler's newest preview (a small JPEG, at most 512 px) at `step` of `steps`."""

    step: int
    steps: int
    mime: str
    image: bytes


class JobEvent(_Shape):
    """One message of a job's event stream. `position` messages (queue position, notice) and `preview`
    messages (the newest live image while it samples; never stored, never replayed) have no id."""

    id: int | None = None
    job_id: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.type in FINAL_STATUSES

    @property
    def preview(self) -> LivePreview | None:
        """A `preview` message's image, decoded from its data URL; None for any other message."""
        if self.type != "preview":
            return None
        head, _, body = str(self.data.get("image", "")).partition(",")
        if not head.startswith("data:") or not head.endswith(";base64"):
            return None
        mime = head[5:].removesuffix(";base64")
        step, steps = int(self.data.get("step") or 0), int(self.data.get("steps") or 0)
        return LivePreview(step=step, steps=steps, mime=mime, image=base64.b64decode(body))


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
