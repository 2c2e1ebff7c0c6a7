"""Request and response models of projects, favourites, share links and ZIP downloads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from backend.schemas import EntityId, Label, _clean_text

# A project's client or room: one line, may be empty.
Line = Annotated[str, Field(max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$"), AfterValidator(_clean_text)]
MAX_SELECTION = 100  # images in one share link or one ZIP


class ProjectCreate(BaseModel):
    name: Label = Field(description="e.g. 'Nguyen apartment'; unique among the designer's projects")
    client: Line = ""
    room: Line = Field("", description="e.g. 'living room'")


class ProjectUpdate(BaseModel):
    name: Label | None = None
    client: Line | None = None
    room: Line | None = None


class ProjectOut(BaseModel):
    id: str
    name: str
    client: str
    room: str
    created_at: datetime
    renders: int = Field(description="jobs filed in it")
    cover_url: str | None = Field(None, description="the thumbnail of its newest render")


class ProjectList(BaseModel):
    items: list[ProjectOut]


# JSON Schema for "names a project" / "names images": the key present and not null.
_NAMES_PROJECT: dict[str, Any] = {
    "required": ["project_id"],
    "properties": {"project_id": {"type": "string"}},
}
_NAMES_IMAGES: dict[str, Any] = {"required": ["image_ids"], "properties": {"image_ids": {"type": "array"}}}


class ShareLinkCreate(BaseModel):
    """A project (`project_id`), or a selection of the designer's images (`image_ids`), made from a
    project (listed with its links, ended with it) or not."""

    # The rule `_a_scope` checks, said in the schema too: at least one of the two, not null.
    model_config = ConfigDict(json_schema_extra={"anyOf": [_NAMES_PROJECT, _NAMES_IMAGES]})

    project_id: EntityId | None = None
    image_ids: list[EntityId] | None = Field(None, min_length=1, max_length=MAX_SELECTION)
    title: Label | None = Field(None, description="shown on the page (default: the project's name)")
    expires_in_days: int | None = Field(14, ge=1, le=90)
    expires_at: datetime | None = Field(None, description="instead of expires_in_days: at most 90 days ahead")

    @model_validator(mode="after")
    def _a_scope(self) -> ShareLinkCreate:
        if self.project_id is None and self.image_ids is None:
            raise ValueError("give project_id, image_ids or both")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone")
        return self


class ShareLinkOut(BaseModel):
    id: str
    title: str
    scope: str = Field(description="project (what is filed in it) or selection (image_ids)")
    project_id: str | None = Field(description="the project it shows, or the selection was made from")
    image_ids: list[str] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    access_count: int
    last_access_at: datetime | None
    active: bool = Field(description="neither revoked nor expired")


class ShareLinkCreated(ShareLinkOut):
    url: str = Field(description="the link to send the client; shown this once (only its hash is kept)")


class ShareLinkList(BaseModel):
    items: list[ShareLinkOut]


class ZipRequest(BaseModel):
    """The renders to download: a selection of images, or everything filed in a project."""

    # The rule `_one_scope` checks, said in the schema too: exactly one of the two, not null.
    model_config = ConfigDict(json_schema_extra={"oneOf": [_NAMES_PROJECT, _NAMES_IMAGES]})

    image_ids: list[EntityId] | None = Field(None, min_length=1, max_length=MAX_SELECTION)
    project_id: EntityId | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> ZipRequest:
        if (self.project_id is None) == (self.image_ids is None):
            raise ValueError("give either project_id or image_ids")
        return self
