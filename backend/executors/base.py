"""What every executor shares: the Executor interface the dispatcher drives, and FollowedJobs.

An executor runs jobs somewhere (a ComfyUI server, SageMaker async inference). The dispatcher hands it
claimed jobs; the executor submits, follows and ends them through its `JobGateway`
(`backend/job_context.py`), the only way it changes job state, builds a render request or stores
results. A gateway verb that returns None (or False) means the job is no longer ours (another
dispatcher adopted it, or it was cancelled): stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from backend.job_context import JobGateway
from backend.models import Job

logger = logging.getLogger(__name__)


class Executor(Protocol):
    name: str  # this executor's instance (a ComfyUI server's name, the SageMaker endpoint)
    executor_type: str  # "comfy" | "sagemaker", stored on the jobs it claims (`Job.executor`)
    serves: frozenset[str]  # its configured lanes ("text", "sketch"); template lanes: backend.lanes

    @property
    def is_available(self) -> bool: ...

    def free_slots(self) -> int: ...

    def preferred_lora(self) -> str | None: ...

    def active_ids(self) -> list[str]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def run_job(self, job: Job) -> None:
        """Submit a freshly claimed job and follow it to its end."""

    async def resume_job(self, job: Job) -> None:
        """Reconcile an adopted job with the executor, then follow it."""

    def on_cancel_requested(self, job_id: str) -> None: ...

    def on_lease_lost(self, job_id: str) -> None: ...

    async def drain(self, grace_s: float) -> None:
        """Stop taking work; finish or hand back what is running within `grace_s`."""


@dataclass
class Followed:
    """What an executor keeps of one job it follows; each executor's subclass adds its own fields."""

    job: Job
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False
    lease_lost: bool = False


F = TypeVar("F", bound=Followed)


class FollowedJobs(Generic[F]):
    """The jobs one executor follows, as the dispatcher sees them: slots, ids, cancel and lease relays.

    `_follow_guarded` registers a job before its first await (the dispatcher counts on it to reserve the
    slot) and turns an unexpected error into a failed job, never into a dead dispatcher task.
    """

    def __init__(self, ctx: JobGateway, slots: int) -> None:
        self.ctx = ctx
        self.slots = slots
        self.active: dict[str, F] = {}
        self._idle = asyncio.Event()  # set whenever the last followed job ends
        self._idle.set()

    def free_slots(self) -> int:
        return max(0, self.slots - len(self.active))

    def active_ids(self) -> list[str]:
        return list(self.active)

    def on_cancel_requested(self, job_id: str) -> None:
        a = self.active.get(job_id)
        if a is not None and not a.cancel_requested:
            a.cancel_requested = True
            a.wake.set()

    def on_lease_lost(self, job_id: str) -> None:
        a = self.active.get(job_id)
        if a is not None:
            a.lease_lost = True
            a.wake.set()

    async def _follow_guarded(self, a: F, work: Callable[[F], Awaitable[object]]) -> None:
        job_id = a.job.id
        self.active[job_id] = a
        self._idle.clear()
        try:
            await work(a)
        except Exception:
            logger.exception("job %s: unexpected error", job_id)
            await self.ctx.fail(job_id, "internal_error", "The dispatcher hit an unexpected error.")
        finally:
            self.active.pop(job_id, None)
            if not self.active:
                self._idle.set()
