"""Every dependency a route takes, as an `Annotated` type: settings, the style manifest, storage, the
database (engine, sessions), the event hub, the ComfyUI probe client and the signed-in designer.

This is the only module of `backend/api/` that reads `app.state` (filled by `main.create_app`'s
lifespan); routes name what they need in their signature. The dependencies take an `HTTPConnection`, so
WebSocket routes use them too, and add nothing to the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.requests import HTTPConnection

from backend.auth import Principal, TokenCache, authenticate, bearer_token
from backend.availability import Availability
from backend.config import Settings
from backend.db import SessionMaker, read_session
from backend.events import EventHub
from backend.instances import InstanceMonitor
from backend.model_manifest import ModelManifest, pinned_models
from backend.model_store import ModelStore
from backend.models import Role
from backend.previews import PreviewHub
from backend.storage import Storage
from contract.styles import Manifest


async def _settings(conn: HTTPConnection) -> Settings:
    settings: Settings = conn.app.state.settings
    return settings


async def _manifest(conn: HTTPConnection) -> Manifest:
    manifest: Manifest = conn.app.state.manifest
    return manifest


async def _storage(conn: HTTPConnection) -> Storage:
    storage: Storage = conn.app.state.storage
    return storage


async def _engine(conn: HTTPConnection) -> AsyncEngine:
    engine: AsyncEngine = conn.app.state.engine
    return engine


async def _sessionmaker(conn: HTTPConnection) -> SessionMaker:
    sessionmaker: SessionMaker = conn.app.state.sessionmaker
    return sessionmaker


async def _http(conn: HTTPConnection) -> httpx.AsyncClient:
    client: httpx.AsyncClient = conn.app.state.http
    return client


async def _availability(conn: HTTPConnection) -> Availability:
    state = conn.app.state
    return Availability(state.instances, state.settings, state.manifest, getattr(state, "lane_needs", None))


async def _instances(conn: HTTPConnection) -> InstanceMonitor:
    monitor: InstanceMonitor = conn.app.state.instances
    return monitor


async def _event_hub(conn: HTTPConnection) -> EventHub:
    hub: EventHub = conn.app.state.event_hub
    return hub


async def _preview_hub(conn: HTTPConnection) -> PreviewHub:
    hub: PreviewHub = conn.app.state.preview_hub
    return hub


async def _token_cache(conn: HTTPConnection) -> TokenCache:
    cache: TokenCache = conn.app.state.token_cache
    return cache


async def _model_store(conn: HTTPConnection) -> ModelStore | None:
    """The models bucket; None when MODELS_BUCKET is not set (adding models is off)."""
    store: ModelStore | None = conn.app.state.model_store
    return store


SettingsDep = Annotated[Settings, Depends(_settings)]
ManifestDep = Annotated[Manifest, Depends(_manifest)]
StorageDep = Annotated[Storage, Depends(_storage)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
SessionMakerDep = Annotated[SessionMaker, Depends(_sessionmaker)]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(_http)]
EventHubDep = Annotated[EventHub, Depends(_event_hub)]
PreviewHubDep = Annotated[PreviewHub, Depends(_preview_hub)]
TokenCacheDep = Annotated[TokenCache, Depends(_token_cache)]
AvailabilityDep = Annotated[Availability, Depends(_availability)]
InstancesDep = Annotated[InstanceMonitor, Depends(_instances)]
ModelStoreDep = Annotated[ModelStore | None, Depends(_model_store)]


async def _session(sessionmaker: SessionMakerDep) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


async def _read_session(sessionmaker: SessionMakerDep) -> AsyncIterator[AsyncSession]:
    session = await read_session(sessionmaker)
    async with session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session)]


# Requests that start a render: an API key's daily quota counts them. (Route paths, as FastAPI routed them.)
RENDER_ROUTES = frozenset({("POST", "/api/jobs"), ("POST", "/api/jobs/{job_id}/retry")})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DROPIN_PATH = "/text2image"  # under the configurable DROPIN_PREFIX


async def _current_designer(conn: HTTPConnection) -> Principal:
    # Reads the state itself rather than through TokenCacheDep and SessionMakerDep: every /api request
    # solves this dependency, and each sub-dependency costs FastAPI a resolution per request.
    state = conn.app.state
    token = conn.headers.get("x-api-key") or bearer_token(conn.headers.get("authorization"))
    method = conn.scope.get("method", "GET")  # a WebSocket has none: it reads
    route = conn.scope.get("route")
    path = getattr(route, "path", "")
    # The drop-in renders on GET too: both of its methods take the render scope and count as renders.
    render = (method, path) in RENDER_ROUTES or path.endswith(DROPIN_PATH)
    scope = "read" if method in READ_METHODS and not render else "render"
    return await authenticate(state.token_cache, state.sessionmaker, token, scope, render=render)


CurrentDesigner = Annotated[Principal, Depends(_current_designer)]


async def _key_manager(designer: CurrentDesigner) -> Principal:
    """A designer with their own token: an API key cannot list, make or revoke keys."""
    designer.require("keys")
    return designer


KeyManager = Annotated[Principal, Depends(_key_manager)]


async def _lead(designer: CurrentDesigner) -> Principal:
    """A lead designer (or an admin), with their own token: publishes templates, adds models."""
    designer.require_role(Role.lead)
    return designer


async def _admin(designer: CurrentDesigner) -> Principal:
    designer.require_role(Role.admin)
    return designer


LeadDep = Annotated[Principal, Depends(_lead)]
AdminDep = Annotated[Principal, Depends(_admin)]


async def _model_manifest(
    settings: SettingsDep, styles: ManifestDep, sessionmaker: SessionMakerDep
) -> ModelManifest:
    """The pinned model files as stored now (base, styles, and the models leads added)."""
    async with sessionmaker() as session:
        return await pinned_models(session, settings, styles)


ModelManifestDep = Annotated[ModelManifest, Depends(_model_manifest)]
