"""Figure 4: jobs claimed per second by 1, 2 and 4 dispatchers from one backlog, with none claimed twice.

Each dispatcher is a process calling `claims.claim_batch` through `JobGateway.transition`, as the
dispatcher's loop does (preferring the LoRA of the job it claimed last, so the affinity window is in
play), until the queue is empty or the run's time is up; nothing is submitted anywhere. A dispatcher
fills all its free slots with one claim: each has `claim_slots` free (8, the default
SAGEMAKER_MAX_IN_FLIGHT: a dispatcher whose overflow tier is idle; its ComfyUI instances add 2 each),
and each time takes that many. The same run with one slot (one job a transaction: a dispatcher with one
free slot left) is reported beside it, informative. Every run starts from a fresh database holding the
whole backlog (on PostgreSQL, analyzed after the bulk insert, as autovacuum would have done for a table
in service). "None claimed twice" is checked twice: the ids the dispatchers report are distinct, and
the database holds exactly one `claimed` event per job.
Baseline: one process running bare write transactions (one `UPDATE … RETURNING` by primary key each)
through the same engine: what one transaction per job costs on this database before any queue logic.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend import claims, job_queue
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.job_context import JobGateway
from backend.migrate import upgrade
from backend.models import Designer, Job, JobEvent, JobStatus, new_id, utcnow
from backend.storage import make_storage
from bench.report import Figure
from bench.sizes import Sizes
from contract.styles import load_manifest
from tests.support.db import fresh_database

TARGET = {"sqlite": 2000.0, "postgresql": 1500.0}
STYLES = (
    ("indochine", "indochine_v1.safetensors"),
    ("minimalist", "minimalist_v1.safetensors"),
    ("none", ""),
)
INSERT_BATCH = 1000
START_TIMEOUT_S = 60.0


@dataclass
class Outcome:
    worker_id: str
    ids: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0


def settings_for(db_url: str, workdir: Path) -> Settings:
    return Settings(_env_file=None, database_url=db_url, data_dir=workdir / "data")  # type: ignore[call-arg]


async def _fill(settings: Settings, backlog: int) -> list[str]:
    """The backlog, oldest first: text jobs of the three styles interleaved."""
    engine = make_engine(settings)
    ids = [new_id() for _ in range(backlog)]
    base = utcnow() - timedelta(seconds=backlog)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            designer = Designer(name="bench", token_hash=secrets.token_hex(32))
            session.add(designer)
            await session.flush()
            rows: list[dict[str, Any]] = []
            for i, job_id in enumerate(ids):
                style, lora = STYLES[i % len(STYLES)]
                params = {"prompt": "a room", "style": style, "seed": i}
                rows.append(
                    {
                        "id": job_id,
                        "designer_id": designer.id,
                        "kind": "text",
                        "lane": "text",
                        "style": style,
                        "lora_name": lora,
                        "params": params,
                        "params_hash": job_queue.params_hash(params),
                        "seed": i,
                        "created_at": base + timedelta(milliseconds=i),
                    }
                )
            for start in range(0, len(rows), INSERT_BATCH):
                await session.execute(insert(Job), rows[start : start + INSERT_BATCH])
        if engine.dialect.name == "postgresql":
            # Statistics, as autovacuum gathers them within a minute of a bulk insert: without them
            # the planner sorts the whole queue instead of reading ix_jobs_claim's head.
            async with engine.begin() as conn:
                await conn.execute(text("ANALYZE jobs"))
    finally:
        await engine.dispose()
    return ids


def prepare(settings: Settings, backlog: int) -> list[str]:
    upgrade(settings)
    return asyncio.run(_fill(settings, backlog))


async def _claim_all(settings: Settings, worker_id: str, start: Any, seconds: float, slots: int) -> Outcome:
    engine = make_engine(settings)
    ctx = JobGateway(settings, make_sessionmaker(engine), make_storage(settings), load_manifest(), worker_id)
    out = Outcome(worker_id)
    try:
        async with engine.connect():  # open the connection before the clock starts
            pass
        start.wait(START_TIMEOUT_S)
        out.started = time.monotonic()
        preferred: str | None = None
        while time.monotonic() - out.started < seconds:
            jobs = await ctx.transition(
                claims.claim_batch,
                worker_id=worker_id,
                lanes=["sketch", "text"],
                executor="comfy",
                instance="bench",
                limit=slots,
                preferred_lora=preferred,
            )
            if not jobs:
                break
            out.ids += [job.id for job in jobs]
            preferred = jobs[-1].lora_name
        out.ended = time.monotonic()
    finally:
        await engine.dispose()
    return out


async def _touch(session: AsyncSession, job_id: str) -> str | None:
    stmt = update(Job).where(Job.id == job_id).values(updated_at=utcnow()).returning(Job.id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def _bare_transactions(settings: Settings, ids: Sequence[str], seconds: float) -> float:
    engine = make_engine(settings)
    ctx = JobGateway(settings, make_sessionmaker(engine), make_storage(settings), load_manifest(), "bare")
    try:
        async with engine.connect():
            pass
        started, done = time.monotonic(), 0
        for job_id in ids:
            await ctx.transition(_touch, job_id)
            done += 1
            if time.monotonic() - started >= seconds:
                break
        return done / (time.monotonic() - started)
    finally:
        await engine.dispose()


def _worker(settings: Settings, worker_id: str, start: Any, results: Any, seconds: float, slots: int) -> None:
    results.put(asyncio.run(_claim_all(settings, worker_id, start, seconds, slots)))


def claim(settings: Settings, dispatchers: int, seconds: float, slots: int) -> list[Outcome]:
    mp = multiprocessing.get_context("spawn")
    start, results = mp.Event(), mp.Queue()
    procs = [
        mp.Process(target=_worker, args=(settings, f"bench-{n}", start, results, seconds, slots), daemon=True)
        for n in range(dispatchers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let every worker import and connect; each waits for `start`
    start.set()
    outcomes = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return outcomes


async def _claim_events(settings: Settings) -> tuple[int, int, int]:
    """(jobs running, `claimed` events, jobs with more than one `claimed` event) in the database."""
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            running = await session.scalar(
                select(func.count()).select_from(Job).where(Job.status == JobStatus.running)
            )
            claimed = await session.scalar(
                select(func.count()).select_from(JobEvent).where(JobEvent.type == "claimed")
            )
            twice = (
                select(JobEvent.job_id)
                .where(JobEvent.type == "claimed")
                .group_by(JobEvent.job_id)
                .having(func.count() > 1)
                .subquery()
            )
            doubles = await session.scalar(select(func.count()).select_from(twice))
            return int(running or 0), int(claimed or 0), int(doubles or 0)
    finally:
        await engine.dispose()


def one_run(
    workdir: Path, db: str, backlog: int, dispatchers: int, seconds: float, slots: int
) -> dict[str, Any]:
    with fresh_database(db, workdir) as db_url:
        settings = settings_for(db_url, workdir)
        prepare(settings, backlog)
        outcomes = claim(settings, dispatchers, seconds, slots)
        running, events, doubles = asyncio.run(_claim_events(settings))
    ids = [i for o in outcomes for i in o.ids]
    wall = max(o.ended for o in outcomes) - min(o.started for o in outcomes)
    return {
        "dispatchers": dispatchers,
        "slots": slots,
        "claimed": len(ids),
        "per_s": len(ids) / wall,
        "wall_s": wall,
        "per_dispatcher": {o.worker_id: len(o.ids) for o in outcomes},
        "reported_twice": len(ids) - len(set(ids)),
        "db_running": running,
        "db_claimed_events": events,
        "db_jobs_claimed_twice": doubles,
        "backlog": backlog,
        "drained": len(ids) == backlog,
        "consistent": len(set(ids)) == len(ids) == running == events,
    }


def baseline(workdir: Path, db: str, backlog: int, seconds: float) -> float:
    with fresh_database(db, workdir) as db_url:
        settings = settings_for(db_url, workdir)
        ids = prepare(settings, backlog)
        return asyncio.run(_bare_transactions(settings, ids, seconds))


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    backlog = sizes.claim_backlog
    bare = baseline(workdir, db, backlog, sizes.claim_s)
    figures = []
    runs = [(n, sizes.claim_slots) for n in sizes.claim_dispatchers]
    runs += [(n, 1) for n in sizes.claim_dispatchers[:1] if sizes.claim_slots > 1]
    for n, slots in runs:
        r = one_run(workdir, db, backlog, n, sizes.claim_s, slots)
        twice = r["reported_twice"] + r["db_jobs_claimed_twice"]
        check = "none twice" if twice == 0 and r["consistent"] else f"{twice} TWICE or lost"
        ok = twice == 0 and r["consistent"]
        informative = slots != sizes.claim_slots
        figures.append(
            Figure(
                key=f"claim_rate.{db}.{n}" + (f".slots{slots}" if informative else ""),
                title=f"4. claims/s, {n} dispatcher{'s' * (n > 1)} x {slots} slot{'s' * (slots > 1)}, "
                f"backlog {backlog:,} ({db})" + (" (informative)" if informative else ""),
                measured=f"{r['per_s']:,.0f}/s ({r['claimed']:,} in {r['wall_s']:.1f} s), {check}",
                baseline=f"bare tx {bare:,.0f}/s",
                target="none twice" if informative else f">= {TARGET[db]:,.0f}/s, none twice",
                passed=ok if informative else ok and r["per_s"] >= TARGET[db],
                values={**r, "bare_tx_per_s": bare, "db": db},
            )
        )
    return figures
