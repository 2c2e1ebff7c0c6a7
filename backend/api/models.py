"""The model inventory (every designer) and adding a model (leads; a pickle only with an admin's leave).

`GET /api/models`: the matrix of `backend.model_inventory`. `POST /api/models`: a model already in the
models bucket, by key. `POST /api/models/upload?folder=&file=&licence=`: the model as the raw request body
(`application/octet-stream`), streamed to the bucket and checked as it arrives, never held whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from backend import model_inventory
from backend.api.account import client_ip
from backend.api.deps import (
    AvailabilityDep,
    CurrentDesigner,
    LeadDep,
    ManifestDep,
    ModelStoreDep,
    SessionDep,
    SettingsDep,
)
from backend.auth import Principal
from backend.config import Settings
from backend.errors import Unavailable
from backend.model_registry import Adding, NewModel, pins
from backend.model_schemas import (
    InstanceOut,
    ModelAdd,
    ModelAddedOut,
    ModelFileOut,
    ModelFolderOut,
    ModelInventoryOut,
    PinOut,
)
from backend.model_store import ModelStore
from backend.models import Role
from contract.model_manifest import ModelEntry
from contract.styles import Manifest

router = APIRouter(prefix="/api", tags=["models"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    403: {"description": "not a lead, or allow_pickle without being an admin"},
    409: {"description": "the name is pinned with another sha256"},
    413: {"description": "larger than MODEL_UPLOAD_MAX_BYTES"},
    422: {"description": "not a valid model file, unknown folder, a path as name, a refused pickle"},
    503: {"description": "no models bucket, or it failed"},
}


def _pin(entry: ModelEntry | None) -> PinOut | None:
    if entry is None:
        return None
    return PinOut(
        sha256=entry.sha256,
        size_bytes=entry.size_bytes,
        licence=entry.licence,
        source=entry.source,
        s3_key=entry.s3_key,
    )


@router.get("/models", response_model=ModelInventoryOut, summary="Every model file, by folder and instance")
async def list_models(
    _designer: CurrentDesigner,
    session: SessionDep,
    settings: SettingsDep,
    styles: ManifestDep,
    availability: AvailabilityDep,
) -> ModelInventoryOut:
    """Per ComfyUI models folder: each file, which instances have it, what pins it, what uses it."""
    snapshot = await availability.monitor.fresh()
    pinned = await pins(session, settings, styles)
    inventory = model_inventory.build(
        snapshot.states,
        pinned,
        await model_inventory.template_uses(session),
        model_inventory.style_uses(styles),
    )
    folders = [
        ModelFolderOut(
            folder=folder,
            files=[
                ModelFileOut(
                    file=row.file,
                    instances=dict(row.instances),
                    missing_on=row.missing_on,
                    pin=_pin(row.pin),
                    templates=list(row.templates),
                    styles=list(row.styles),
                )
                for row in rows
            ],
        )
        for folder, rows in inventory.folders.items()
    ]
    return ModelInventoryOut(
        instances=[InstanceOut(name=s.name, reachable=s.reachable, error=s.error) for s in snapshot.states],
        folders=folders,
        known_folders=sorted(model_inventory.known_folders(snapshot.states, pinned)),
        can_add=bool(settings.models_bucket),
    )


async def _adding(
    request: Request,
    lead: Principal,
    allow_pickle: bool,
    store: ModelStore | None,
    session: SessionDep,
    settings: Settings,
    styles: Manifest,
    availability: AvailabilityDep,
) -> Adding:
    if allow_pickle:
        lead.require_role(Role.admin)
    if store is None:
        raise Unavailable(
            "Adding models needs the server's MODELS_BUCKET setting.", code="models_bucket_unset"
        )
    pinned = await pins(session, settings, styles)
    snapshot = await availability.monitor.current()
    folders = model_inventory.known_folders(snapshot.states, pinned)
    return Adding(session, store, settings, pinned, folders, lead.id, lead.name, client_ip(request))


def _added(entry: ModelEntry, created: bool, response: Response) -> ModelAddedOut:
    response.status_code = 201 if created else 200
    return ModelAddedOut(
        folder=entry.folder,
        file=entry.file,
        s3_key=entry.s3_key,
        sha256=entry.sha256,
        size_bytes=entry.size_bytes,
        licence=entry.licence,
        source=entry.source,
        created=created,
    )


@router.post(
    "/models",
    status_code=201,
    response_model=ModelAddedOut,
    summary="Add a model already in the models bucket",
    responses={**ERRORS, 200: {"description": "already pinned: the same file under this name"}},
)
async def add_model(
    request: Request,
    body: ModelAdd,
    lead: LeadDep,
    store: ModelStoreDep,
    session: SessionDep,
    settings: SettingsDep,
    styles: ManifestDep,
    availability: AvailabilityDep,
    response: Response,
) -> ModelAddedOut:
    """The object at `s3_key` is read and checked (safetensors header and tensor layout), then pinned and
    added to the synced set: the ML hosts fetch it on their next sync, with no redeploy."""
    adding = await _adding(request, lead, body.allow_pickle, store, session, settings, styles, availability)
    new = NewModel(body.folder, body.file, body.licence.strip(), body.allow_pickle)
    return _added(*await adding.by_key(new, body.s3_key), response)


@router.post(
    "/models/upload",
    status_code=201,
    response_model=ModelAddedOut,
    summary="Upload a model (the request body is the file)",
    responses={**ERRORS, 200: {"description": "already pinned: the same file under this name"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_model(
    request: Request,
    lead: LeadDep,
    store: ModelStoreDep,
    session: SessionDep,
    settings: SettingsDep,
    styles: ManifestDep,
    availability: AvailabilityDep,
    response: Response,
    folder: Annotated[str, Query(min_length=1, max_length=64)],
    file: Annotated[str, Query(min_length=1, max_length=200)],
    licence: Annotated[str, Query(min_length=1, max_length=100, pattern=r"\S")],
    allow_pickle: bool = False,
) -> ModelAddedOut:
    """The body streams into the bucket while its header is checked and its sha256 computed; a refused
    file leaves nothing behind."""
    adding = await _adding(request, lead, allow_pickle, store, session, settings, styles, availability)
    declared = request.headers.get("content-length", "")
    new = NewModel(folder, file, licence.strip(), allow_pickle)
    chunks: AsyncIterator[bytes] = request.stream()
    return _added(*await adding.upload(new, chunks, int(declared) if declared.isdigit() else None), response)
