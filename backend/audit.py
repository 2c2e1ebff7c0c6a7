"""The audit log: who did what to whom, appended in the transaction of the action itself, so that an
action and its line commit or roll back together. Rows are never changed or deleted (triggers refuse it
on both databases, migration 0008); admins read them (`api/admin_audit.py`), filtered, or as JSON lines.

What is recorded: sign-ins (success and failure, with the reason), sign-outs, account changes (invited,
role, disabled, enabled, quotas, password links and password set), API keys made, rotated and revoked,
and, from the routes that do them, template publishes, rollbacks, retirements and restorations, model
additions, share links made, used and revoked (call `record` with the ACTIONS below). Never a secret:
`record` refuses a detail whose name says it holds one, and its callers pass ids and names, never tokens,
keys or passwords.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import AuditEvent, utcnow

ACTIONS = frozenset(
    {
        "sign_in",
        "sign_out",
        "user_invited",
        "role_changed",
        "user_disabled",
        "user_enabled",
        "quota_changed",
        "password_link_created",
        "password_set",
        "key_created",
        "key_rotated",
        "key_revoked",
        "template_published",
        "template_rolled_back",
        "template_retired",
        "template_restored",
        "model_added",
        "share_link_created",
        "share_link_used",
        "share_link_revoked",
    }
)
SIGN_INS = ("sign_in",)
_SECRET_WORDS = ("password", "secret", "token", "key_value", "credential")
EXPORT_BATCH = 500


@dataclass(frozen=True)
class Actor:
    """Who acted: a designer (id and name), or nobody yet (a failed sign-in)."""

    id: str | None
    name: str = ""


def record(
    session: AsyncSession,
    action: str,
    actor: Actor,
    *,
    outcome: str = "success",
    reason: str = "",
    target: tuple[str, str] = ("", ""),
    ip: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one line in the session's open transaction. `target`: (type, id), e.g. ("designer", id)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    details = details or {}
    leaking = [name for name in details if any(word in name.lower() for word in _SECRET_WORDS)]
    if leaking:
        raise ValueError(f"audit details must not hold secrets: {leaking}")
    event = AuditEvent(
        created_at=utcnow(),
        action=action,
        outcome=outcome,
        reason=reason[:100],
        actor_id=actor.id,
        actor_name=actor.name[:100],
        target_type=target[0],
        target_id=target[1][:100],
        ip=ip[:64],
        details=details,
    )
    session.add(event)
    return event


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    outcome: str | None = None
    actor_id: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # the cursor: lines older than this one

    def query(self) -> Select[AuditEvent]:
        q = select(AuditEvent).order_by(AuditEvent.id.desc())
        for column, value in (
            (AuditEvent.action, self.action),
            (AuditEvent.outcome, self.outcome),
            (AuditEvent.actor_id, self.actor_id),
            (AuditEvent.target_id, self.target_id),
        ):
            if value is not None:
                q = q.where(column == value)
        if self.since is not None:
            q = q.where(AuditEvent.created_at >= self.since)
        if self.until is not None:
            q = q.where(AuditEvent.created_at < self.until)
        if self.before_id is not None:
            q = q.where(AuditEvent.id < self.before_id)
        return q


def as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "created_at": event.created_at.isoformat(),
        "action": event.action,
        "outcome": event.outcome,
        "reason": event.reason,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "ip": event.ip,
        "details": event.details,
    }


async def page(session: AsyncSession, where: AuditFilter, limit: int) -> list[AuditEvent]:
    return list(await session.scalars(where.query().limit(limit)))


async def export_lines(session: AsyncSession, where: AuditFilter) -> AsyncIterator[bytes]:
    """Every matching line, newest first, one JSON object a line, read in batches."""
    before = where.before_id
    while True:
        batch = await page(session, AuditFilter(**{**where.__dict__, "before_id": before}), EXPORT_BATCH)
        for event in batch:
            yield (json.dumps(as_dict(event), separators=(",", ":")) + "\n").encode()
        if len(batch) < EXPORT_BATCH:
            return
        before = batch[-1].id
