"""A job's webhook: its URL checked when the job is created, and its deliveries shown to the designer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend import webhook_targets, webhooks
from backend.api.deps import CurrentDesigner, ReadSessionDep
from backend.config import Settings
from backend.errors import InvalidInput, NotFound
from backend.models import Job, WebhookDelivery
from backend.schemas import WebhookAttempt, WebhookDeliveryList, WebhookDeliveryOut, is_entity_id

router = APIRouter(prefix="/api", tags=["jobs"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    404: {"description": "no such job for this designer"},
}


def _refused(message: str, code: str) -> InvalidInput:
    return InvalidInput(
        f"webhook_url {message}", code=code, details=[{"field": "webhook_url", "message": message}]
    )


async def checked_webhook_url(settings: Settings, url: str | None) -> str | None:
    """`url` if a webhook may be sent there now (it is checked again before every attempt); 422 if not."""
    if url is None:
        return None
    if not settings.webhook_secret.get_secret_value():
        raise _refused("cannot be used: this server has no WEBHOOK_SECRET", "webhooks_disabled")
    try:
        await webhook_targets.check(url, webhook_targets.AllowList.parse(settings.webhook_allow))
    except webhook_targets.TargetRefused as exc:
        raise _refused(str(exc), "webhook_url_refused") from None
    return url


def delivery_out(d: WebhookDelivery) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        id=d.id,
        event_type=d.event_type,
        url=d.url,
        status=d.status,
        attempts=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        history=[WebhookAttempt.model_validate(entry) for entry in d.history],
    )


@router.get(
    "/jobs/{job_id}/webhooks",
    response_model=WebhookDeliveryList,
    responses=ERRORS,
    summary="The job's webhook deliveries: attempts, answers, times",
)
async def list_deliveries(
    job_id: str, session: ReadSessionDep, designer: CurrentDesigner
) -> WebhookDeliveryList:
    job = await session.get(Job, job_id) if is_entity_id(job_id) else None
    if job is None or job.designer_id != designer.id:
        raise NotFound(f"No job {job_id!r}.", code="job_not_found")
    return WebhookDeliveryList(items=[delivery_out(d) for d in await webhooks.for_job(session, job_id)])
