"""The dispatcher: route, claim, hold, adopt. `python -m backend.dispatcher`.

Several may run (on one or many hosts): claims are atomic (`backend.claims`), every running job is held
by exactly one dispatcher through its heartbeat, and a dispatcher adopts the jobs of one that stopped
heartbeating. The executors (`backend/executors/`) do the rest of a job's life: they build its render
request, submit, follow, store and finish it, and reconcile an adopted job with their ML tier by its
id before anything else, all through the `JobGateway` (`backend/job_context.py`) this module gives
them. This module only decides what runs where, and keeps the holds alive.

Lanes (`backend.lanes`): an executor claims the jobs of its configured kinds (`text`, `sketch`) and of
every template lane its server covers (node classes and model files), judged again every LANES_REFRESH_S
and as soon as a job of a lane not judged yet is queued; a job whose needs no executor covers is never
claimed (the API's notice says why).

Routing (DISPATCH_ROUTING): `comfy_first` fills the ComfyUI instances first and gives the SageMaker
executor a job of a lane only when every ComfyUI instance for that lane is full or unavailable and more
than SAGEMAKER_OVERFLOW_BACKLOG jobs of it are claimable (a lane no instance serves goes to SageMaker
at once); `comfy_only` and `sagemaker_only` use one tier. One claim (one transaction) fills all the
free slots of an executor (`claims.claim_batch`); a slot is reserved synchronously when a job task
is spawned, so a pass never claims more jobs than an executor has slots.

An idle dispatcher looks for work when a job is queued (`backend.notify`: PostgreSQL NOTIFY, or a
datagram on SQLite's one host) or one of its jobs ends, and every DISPATCHER_POLL_S besides.

With WEBHOOK_SECRET set, each dispatcher also sends the webhook outbox (`backend.webhook_worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Sequence

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend import claims, job_queries, job_queue, notify, previews
from backend.config import Settings, get_settings
from backend.db import SessionMaker, is_connection_error, make_engine, make_sessionmaker, read_session
from backend.executors.base import Executor
from backend.executors.comfy import ComfyExecutor
from backend.executors.sagemaker import SageMakerExecutor
from backend.job_context import JobGateway
from backend.lanes import DispatchLanes
from backend.logs import configure_logging
from backend.models import Job
from backend.notify import Notifier
from backend.storage import Storage, make_storage
from backend.webhook_worker import WebhookWorker
from contract.styles import Manifest, load_manifest

logger = logging.getLogger(__name__)

CANCEL_POLL_S = 0.25
ADOPT_INTERVAL_S = 5.0
SHUTDOWN_GRACE_S = 30.0
STARTUP_WAIT_S = 30.0
DB_RETRY_MAX_S = 5.0  # back-off cap while the database is unreachable


def make_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class NoExecutor(RuntimeError):
    """The settings name no ML tier this dispatcher could use."""


def make_executors(ctx: JobGateway) -> list[Executor]:
    """The executors DISPATCH_ROUTING asks for; NoExecutor when that leaves none."""
    s = ctx.settings
    routing = s.dispatch_routing
    executors: list[Executor] = []
    if routing != "sagemaker_only":
        executors += [ComfyExecutor(ctx, instance) for instance in s.comfy_instances]
    if routing != "comfy_only" and s.sagemaker_endpoint_name:
        executors.append(SageMakerExecutor(ctx))
    if not executors:
        need = {
            "comfy_only": "COMFY_UI_ADDRESS (DISPATCH_ROUTING=comfy_only)",
            "sagemaker_only": "SAGEMAKER_ENDPOINT_NAME (DISPATCH_ROUTING=sagemaker_only)",
        }.get(routing, "COMFY_UI_ADDRESS or SAGEMAKER_ENDPOINT_NAME")
        raise NoExecutor(f"no executor configured: set {need}")
    return executors


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: SessionMaker,
        storage: Storage,
        manifest: Manifest,
        *,
        worker_id: str | None = None,
        executors: Sequence[Executor] | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.worker_id = worker_id or make_worker_id()
        self.ctx = JobGateway(settings, sessionmaker, storage, manifest, self.worker_id)
        self.executors: list[Executor] = (
            list(executors) if executors is not None else make_executors(self.ctx)
        )
        self.stopping = asyncio.Event()
        self._woken = asyncio.Event()  # a job was queued (backend.notify) or a slot freed: look now
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved: dict[int, set[str]] = {}  # executor id → jobs spawned, not yet in its `active`
        self.lanes = DispatchLanes(settings, sessionmaker, self.executors)
        self._lanes_stale = False  # a job of a lane not judged yet was queued

    # --- public ------------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Dispatch until stopped (or, with `until_idle`, until nothing is queued or running here)."""
        if not self.executors:
            raise NoExecutor("no executor configured: set COMFY_UI_ADDRESS or SAGEMAKER_ENDPOINT_NAME")
        for ex in self.executors:
            await ex.start()
        self.lanes = DispatchLanes(self.settings, self.sessionmaker, self.executors)
        notifier = self._notifier()
        if notifier is not None:
            notifier.add_listener(notify.JOBS, self.on_job_queued)
            await notifier.start()
        keeper = asyncio.create_task(self._keep_holds(), name="holds")
        webhook_sender = self._start_webhooks()
        logger.info(
            "dispatcher %s started with %s",
            self.worker_id,
            ", ".join(e.name for e in self.executors),
            extra={"action": "dispatcher_started"},
        )
        try:
            await self._wait_for_executors(STARTUP_WAIT_S if until_idle else 0)
            await self._adopt()
            await self._loop(until_idle)
        finally:
            await self._shutdown()
            for task in filter(None, (keeper, webhook_sender)):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for ex in self.executors:
                await ex.close()
            await self.lanes.close()
            if notifier is not None:
                await notifier.close()

    def on_job_queued(self, lane: str) -> None:
        """`backend.notify` listener: a job of `lane` was queued (one not judged yet: judge it first)."""
        if any(lane in self.lanes.of(ex) for ex in self.executors):
            self._woken.set()
        elif not self.lanes.is_known(lane):
            self._lanes_stale = True
            self._woken.set()

    def _start_webhooks(self) -> asyncio.Task[None] | None:
        """The webhook outbox's sender (`backend.webhook_worker`), where a signing secret is set. A
        delivery it holds when stopped is sent again by any dispatcher once its lease ends."""
        if not self.settings.webhook_secret.get_secret_value():
            return None
        worker = WebhookWorker(self.settings, self.ctx.transition, self.worker_id)
        return asyncio.create_task(worker.run(), name="webhooks")

    def _notifier(self) -> Notifier | None:
        engine = self.sessionmaker.kw.get("bind")
        return Notifier(engine) if isinstance(engine, AsyncEngine) else None

    # --- the loop ----------------------------------------------------------------------------------
    async def _loop(self, until_idle: bool) -> None:
        last_adopt = time.monotonic()
        db_delay = 0.0
        while not self.stopping.is_set():
            woken = self._woken.is_set()
            self._woken.clear()  # before looking: a job queued while we look wakes the next wait
            try:
                if self._lanes_stale or self.lanes.is_due():
                    self._lanes_stale = False
                    await self.lanes.refresh()
                lanes = self.lanes.all()
                claimed = await self._fill(lanes, look_first=not woken)
                if time.monotonic() - last_adopt >= ADOPT_INTERVAL_S:
                    last_adopt = time.monotonic()
                    await self._adopt()
                    await previews.sweep(self.sessionmaker)  # those of jobs whose follower died
                if until_idle and not claimed and not self._tasks and not await self._has_work(lanes):
                    return
                db_delay = 0.0
            except DBAPIError as exc:
                if not is_connection_error(exc):
                    raise
                # Lost connection, server restarting, database locked: the jobs are safe in it; wait.
                db_delay = min(DB_RETRY_MAX_S, max(self.settings.dispatcher_poll_s, db_delay * 2 or 0.1))
                logger.warning("database unavailable (%s); retrying in %.1f s", exc.orig, db_delay)
                claimed = False
            if not claimed:
                await self._wait(max(self.settings.dispatcher_poll_s, db_delay), woken=not db_delay)

    async def _wait(self, timeout_s: float, *, woken: bool) -> None:
        """Until stopped, the timeout, or (with `woken`) a notification that a job was queued."""
        waits = [asyncio.ensure_future(self.stopping.wait())]
        if woken:
            waits.append(asyncio.ensure_future(self._woken.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _has_work(self, lanes: Sequence[str]) -> bool:
        session = await read_session(self.sessionmaker)
        async with session:
            return await claims.has_claimable(session, lanes)

    def _free(self, ex: Executor) -> int:
        return ex.free_slots() - len(self._reserved.get(id(ex), ()))

    def _is_overflow(self, ex: Executor) -> bool:
        return ex.executor_type == SageMakerExecutor.executor_type

    async def _fill(self, lanes: Sequence[str], *, look_first: bool = True) -> bool:
        """Fill every available executor's free slots, one claim (one transaction) per executor; True if
        any job was claimed. `look_first`: read whether anything is claimable before trying to claim (a
        poll, not a wake-up)."""
        ready = [ex for ex in self.executors if ex.is_available and self._free(ex) > 0]
        if not ready or (look_first and not await self._has_work(lanes)):
            return False
        claimed = False
        # ComfyUI first (most free slots first), the overflow tier last.
        for ex in sorted(ready, key=lambda e: (self._is_overflow(e), -self._free(e))):
            free = self._free(ex)
            ex_lanes, limit = (
                await self._overflow_share(ex, free)
                if self._is_overflow(ex)
                else (sorted(self.lanes.of(ex)), free)
            )
            if limit <= 0 or not ex_lanes:
                continue
            jobs = await self.ctx.transition(
                claims.claim_batch,
                worker_id=self.worker_id,
                lanes=ex_lanes,
                executor=ex.executor_type,
                instance=ex.name,
                limit=limit,
                preferred_lora=ex.preferred_lora(),
            )
            for job in jobs:
                logger.info(
                    "job %s claimed for %s",
                    job.id,
                    ex.name,
                    extra={"action": "job_claimed", "job_id": job.id},
                )
                self._spawn(ex, job, resume=False)
                claimed = True
        return claimed

    async def _overflow_share(self, ex: Executor, free: int) -> tuple[list[str], int]:
        """The lanes the overflow executor may take now, and how many jobs (see the module docstring):
        a lane no available ComfyUI instance serves goes there freely; otherwise only the backlog past
        SAGEMAKER_OVERFLOW_BACKLOG, once every instance serving the lane is full."""
        own = sorted(self.lanes.of(ex))
        if self.settings.dispatch_routing == "sagemaker_only":
            return own, free
        direct = [e for e in self.executors if not self._is_overflow(e)]
        backlog: dict[str, int] | None = None
        lanes: list[str] = []
        share = 0
        for lane in own:
            serving = [e for e in direct if lane in self.lanes.of(e)]
            if not serving:
                lanes.append(lane)
                share = free
                continue
            if any(e.is_available and self._free(e) > 0 for e in serving):
                continue
            if backlog is None:
                session = await read_session(self.sessionmaker)
                async with session:
                    backlog = await claims.count_claimable(session, own)
            excess = backlog.get(lane, 0) - self.settings.sagemaker_overflow_backlog
            if excess > 0:
                lanes.append(lane)
                share += excess
        return lanes, min(free, share)

    def _spawn(self, ex: Executor, job: Job, *, resume: bool) -> None:
        """Start the job's task, its slot reserved until the executor counts the job itself."""
        reserved = self._reserved.setdefault(id(ex), set())
        reserved.add(job.id)

        async def _run() -> None:
            reserved.discard(job.id)  # the executor registers the job before its first await
            await (ex.resume_job(job) if resume else ex.run_job(job))

        task = asyncio.create_task(_run(), name=f"job {job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: reserved.discard(job.id))
        task.add_done_callback(lambda _: self._woken.set())  # a slot is free: fill it now

    async def _wait_for_executors(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        # Availability is a property of each executor's socket loop; a short poll is the simplest wait.
        while time.monotonic() < deadline and not all(ex.is_available for ex in self.executors):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    # --- adoption and holds ------------------------------------------------------------------------
    def _executor_for(self, job: Job) -> Executor | None:
        for ex in self.executors:
            if ex.name == job.instance and ex.executor_type == job.executor:
                return ex
        return None

    async def _adopt(self) -> None:
        jobs = await self.ctx.transition(job_queue.adopt_stalled, self.worker_id, self.settings.stall_after_s)
        for job in jobs:
            ex = self._executor_for(job)
            logger.warning(
                "adopted job %s (was %s on %s)",
                job.id,
                job.executor,
                job.instance,
                extra={"action": "job_adopted", "job_id": job.id},
            )
            if ex is None and job.executor == SageMakerExecutor.executor_type:
                # Queued at SageMaker: back in the queue it could run twice; a dispatcher with it adopts it.
                await self.ctx.held(job_queue.unhold, job.id)
                continue
            if ex is None:
                await self.ctx.release(job.id, "its executor is not configured here")
                continue
            if job.id in ex.active_ids() or job.id in self._reserved.get(id(ex), ()):
                # Our own heartbeat lapsed (a stalled database, a loaded host): the hold is ours again
                # and the follower we have goes on; a second one would submit the job twice.
                continue
            self._spawn(ex, job, resume=True)

    async def _keep_holds(self) -> None:
        """Relay cancel requests every CANCEL_POLL_S; heartbeat held jobs every heartbeat interval."""
        last_beat = 0.0
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            owner = {jid: ex for ex in self.executors for jid in ex.active_ids()}
            if not owner:
                continue
            try:
                if time.monotonic() - last_beat >= self.settings.heartbeat_interval_s:
                    last_beat = time.monotonic()
                    held = await self.ctx.transition(job_queue.heartbeat, self.worker_id, list(owner))
                    for jid, ex in owner.items():
                        if jid not in held:
                            ex.on_lease_lost(jid)
                    cancelled = {jid for jid, state in held.items() if state.cancel_requested}
                else:
                    session = await read_session(self.sessionmaker)
                    async with session:
                        cancelled = await job_queries.cancel_flags(session, list(owner))
                for jid in cancelled:
                    owner[jid].on_cancel_requested(jid)
            except Exception:
                logger.exception("keeping holds failed; retrying")

    async def _shutdown(self) -> None:
        if self.stopping.is_set():
            logger.info("dispatcher %s stopping", self.worker_id, extra={"action": "dispatcher_stopping"})
            await asyncio.gather(*(ex.drain(SHUTDOWN_GRACE_S) for ex in self.executors))
        for ex in self.executors:
            for jid in ex.active_ids():
                ex.on_lease_lost(jid)
                with contextlib.suppress(Exception):
                    await self.ctx.held(job_queue.unhold, jid)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


async def serve(
    settings: Settings, executors_for: Callable[[JobGateway], Sequence[Executor]] = make_executors
) -> None:
    """Run one dispatcher until SIGTERM / SIGINT; `executors_for` builds its executors from its context."""
    engine = make_engine(settings)
    storage, manifest = make_storage(settings), load_manifest(settings.style_manifest)
    dispatcher = Dispatcher(settings, make_sessionmaker(engine), storage, manifest, executors=[])
    dispatcher.executors = list(executors_for(dispatcher.ctx))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatcher.stop)
    try:
        await dispatcher.run()
    finally:
        await engine.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except NoExecutor as exc:
        raise SystemExit(f"dispatcher: {exc}") from None


if __name__ == "__main__":
    main()
