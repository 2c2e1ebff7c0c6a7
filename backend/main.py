"""create_app(settings): routers, error handlers, lifespan (engine, storage, manifest, notifier, events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from backend import notify
from backend.api import (
    account,
    admin,
    admin_audit,
    cutouts,
    downloads,
    events,
    health,
    image_links,
    images,
    jobs,
    keys,
    projects,
    redesign,
    share_links,
    styles,
    template_previews,
    templates,
    text2image,
    webhooks,
)
from backend.api import models as models_api
from backend.api_keys import KeyLimits
from backend.auth import TokenCache
from backend.body_limit import BodyLimit, route_limits
from backend.config import Settings, get_settings
from backend.db import make_engine, make_sessionmaker
from backend.errors import install_error_handlers
from backend.events import EventHub
from backend.instances import InstanceMonitor
from backend.lanes import LaneNeedsCache
from backend.logs import configure_logging
from backend.model_store import ModelStore
from backend.notify import Notifier
from backend.oidc import IdTokenVerifier
from backend.openapi_doc import install_openapi
from backend.previews import PreviewHub
from backend.security_headers import SecurityHeaders
from backend.storage import make_storage
from backend.template_builtins import publish_builtins
from contract.styles import load_manifest

DESCRIPTION = """Interior Studio's render API. Every route under `/api` but the sign-in ones needs
`Authorization: Bearer <token>`: a designer's token, an API key, or the session `/api/auth/sign-in` gives.
Errors always have the shape `{"error": {"code", "message", "details"}}`."""
# The docs pages' scripts and styles come from the installed package, not a CDN: a studio network may be
# offline. Under /docs, so the load balancer's rule for /docs* sends them to the API.
DOCS_ASSETS_URL = "/docs/assets"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)
        engine = make_engine(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.storage = make_storage(settings)
        app.state.model_store = ModelStore(settings) if settings.models_bucket else None
        app.state.manifest = load_manifest(settings.style_manifest)
        app.state.token_cache = TokenCache(
            KeyLimits(settings.api_key_rate_per_minute, settings.api_key_renders_per_day),
            settings.session_idle_s,
        )
        app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0))
        app.state.oidc = (
            IdTokenVerifier(
                settings.oidc_issuer, settings.oidc_client_id, app.state.http, settings.oidc_jwks_ttl_s
            )
            if settings.oidc_issuer
            else None
        )
        app.state.instances = InstanceMonitor(
            settings.comfy_instances, app.state.http, settings.comfy_models_ttl_s
        )
        await publish_builtins(app.state.sessionmaker, settings, app.state.manifest)
        app.state.lane_needs = LaneNeedsCache(app.state.sessionmaker)
        app.state.event_hub = EventHub(app.state.sessionmaker, settings.event_poll_s)
        app.state.notifier = Notifier(engine)
        app.state.notifier.add_listener(notify.EVENTS, app.state.event_hub.on_notified)
        app.state.notifier.add_listener(notify.DESIGNERS, app.state.token_cache.forget)
        app.state.preview_hub = PreviewHub(app.state.sessionmaker, settings.event_poll_s)
        app.state.notifier.add_listener(notify.PREVIEWS, app.state.preview_hub.on_notified)
        await app.state.notifier.start()
        app.state.event_hub.start()
        app.state.preview_hub.start()
        try:
            yield
        finally:
            await app.state.preview_hub.stop()
            await app.state.event_hub.stop()
            await app.state.notifier.close()
            await app.state.instances.close()
            await app.state.http.aclose()
            await engine.dispose()

    app = FastAPIOffline(
        static_url=DOCS_ASSETS_URL,
        title="Interior Studio API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    install_error_handlers(app)
    key_limits = {
        "rate_limit_per_minute": settings.api_key_rate_per_minute,
        "renders_per_day": settings.api_key_renders_per_day,
    }
    install_openapi(app, load_manifest(settings.style_manifest).ids, {"ApiKeyCreate": key_limits})
    app.add_middleware(BodyLimit, limit_for=route_limits(settings))
    app.add_middleware(SecurityHeaders)
    routers = (
        jobs,
        templates,
        template_previews,
        images,
        cutouts,
        image_links,
        redesign,
        events,
        styles,
        health,
        keys,
        webhooks,
        account,
        admin,
        admin_audit,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(models_api.router)
    for module in (projects, share_links, downloads):
        app.include_router(module.router)
    app.include_router(share_links.public)
    app.include_router(text2image.router, prefix=settings.dropin_prefix)
    return app


def app_factory() -> FastAPI:
    return create_app()
