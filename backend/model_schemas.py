"""The model inventory's and model adding's request and response models (`/api/models`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Licence = str  # a licence id as Hugging Face writes them (creativeml-openrail-m, openrail, apache-2.0...)


class PinOut(BaseModel):
    """What the manifest pins: model sync refuses any other bytes under this name."""

    sha256: str = Field(description="'' when the base manifest has not pinned it yet")
    size_bytes: int
    licence: str
    source: Literal["base", "style", "added"] = Field(
        description="base: mlserver/models.toml; style: a style's LoRA; added: added by a lead"
    )
    s3_key: str


class ModelFileOut(BaseModel):
    file: str
    instances: dict[str, bool | None] = Field(
        description="instance → has the file (null: its folder could not be listed)"
    )
    missing_on: list[str] = Field(description="instances that listed the folder without this file")
    pin: PinOut | None = Field(description="null: no manifest pins it (it cannot be synced)")
    templates: list[str] = Field(description="published templates whose current version loads it")
    styles: list[str] = Field(description="styles whose LoRA it is")


class ModelFolderOut(BaseModel):
    folder: str
    files: list[ModelFileOut]


class InstanceOut(BaseModel):
    name: str
    reachable: bool
    error: str | None = None


class ModelInventoryOut(BaseModel):
    instances: list[InstanceOut]
    folders: list[ModelFolderOut]
    known_folders: list[str] = Field(description="folders a model may be added to")
    can_add: bool = Field(description="adding models is on (the server has a models bucket)")


class ModelAdd(BaseModel):
    """A model already in the models bucket, to check and pin."""

    model_config = ConfigDict(extra="forbid")

    folder: str = Field(min_length=1, max_length=64, examples=["loras"])
    file: str = Field(min_length=1, max_length=200, description="the name ComfyUI lists it under")
    s3_key: str = Field(min_length=1, max_length=1024, description="under models/ or loras/")
    licence: Licence = Field(min_length=1, max_length=100, pattern=r"\S")
    allow_pickle: bool = Field(False, description="admins only: add a pickle checkpoint (.ckpt, .pt...)")


class ModelAddedOut(BaseModel):
    folder: str
    file: str
    s3_key: str
    sha256: str
    size_bytes: int
    licence: str
    source: Literal["base", "style", "added"]
    created: bool = Field(description="false: the same file was already pinned under this name")
