"""The delivery worker: a dispatcher's background task that sends the webhook outbox (`backend.webhooks`).

Every WEBHOOK_POLL_S it claims the due deliveries and POSTs them concurrently, each to an address checked
again just before the attempt (`backend.webhook_targets`: DNS may have changed since the job was created)
and reached by that address, the host name kept for the `Host` header and TLS. Redirects are not followed
(a redirect could lead anywhere) and no proxy from the environment is used. The signing secret is read
from the settings and never logged; neither are the bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from backend import webhook_targets, webhooks
from backend.config import Settings
from backend.models import WebhookDelivery

logger = logging.getLogger(__name__)

T = TypeVar("T")
Transition = Callable[..., Awaitable[Any]]
CLAIM_BATCH = 20  # deliveries sent at once by one worker
USER_AGENT = "InteriorStudio-Webhooks/1"


class WebhookWorker:
    def __init__(self, settings: Settings, transition: Transition, worker_id: str) -> None:
        self.settings = settings
        self.transition = transition  # JobGateway.transition: one function, one transaction, retried
        self.worker_id = worker_id
        self.allow = webhook_targets.AllowList.parse(settings.webhook_allow)
        self._key = webhooks.secret_key(settings.webhook_secret.get_secret_value())
        timeout = httpx.Timeout(settings.webhook_timeout_s)
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)

    async def run(self) -> None:
        """Send due deliveries until cancelled (the dispatcher owns this task)."""
        try:
            while True:
                try:
                    sent = await self.send_due()
                except Exception:
                    logger.exception("webhook delivery pass failed; retrying")
                    sent = 0
                if sent < CLAIM_BATCH:
                    await asyncio.sleep(self.settings.webhook_poll_s)
        finally:
            await self._http.aclose()

    async def send_due(self) -> int:
        """Claim and send one batch; how many were claimed."""
        s = self.settings
        claimed = await self.transition(webhooks.claim_due, self.worker_id, s.webhook_lease_s, CLAIM_BATCH)
        await asyncio.gather(*(self._deliver(d) for d in claimed))
        return len(claimed)

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        outcome = await self.attempt(delivery)
        s = self.settings
        kept = await self.transition(
            webhooks.complete,
            delivery,
            self.worker_id,
            outcome,
            max_attempts=s.webhook_max_attempts,
            base_s=s.webhook_backoff_s,
            cap_s=s.webhook_backoff_max_s,
        )
        logger.info(
            "webhook %s attempt %d for job %s: %s",
            delivery.id,
            delivery.attempts,
            delivery.job_id,
            outcome.status_code or outcome.error,
            extra={"action": "webhook_attempt", "job_id": delivery.job_id, "stale": not kept},
        )

    async def attempt(self, delivery: WebhookDelivery) -> webhooks.Outcome:
        """One POST of the delivery: its status, or why it got none."""
        try:
            target = await webhook_targets.check(delivery.url, self.allow)
        except webhook_targets.TargetRefused as exc:
            return webhooks.Outcome(error=f"target refused: {exc}")
        started = time.monotonic()
        try:
            response = await self._post(target, delivery)
        except httpx.TimeoutException:
            return webhooks.Outcome(error="timed out", retryable=True, duration_ms=_ms(started))
        except httpx.HTTPError as exc:
            return webhooks.Outcome(error=f"{type(exc).__name__}", retryable=True, duration_ms=_ms(started))
        return webhooks.outcome_of_status(response.status_code, _ms(started))

    async def _post(self, target: webhook_targets.Target, delivery: WebhookDelivery) -> httpx.Response:
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        url = httpx.URL(target.url)
        host_header = url.netloc.decode("ascii")
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": host_header,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhooks.sign(self._key, delivery.id, timestamp, body),
        }
        pinned = url.copy_with(host=str(target.addresses[0]))
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        return await self._http.post(pinned, content=body, headers=headers, extensions=extensions)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
