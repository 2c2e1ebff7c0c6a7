"""Prometheus metrics, read from the database at scrape time, so every API worker and every dispatcher
(on any host) is counted: jobs by state, queue depth, job and per-step latency over the last hour,
ComfyUI errors. Process metrics come from prometheus_client's default collectors."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from backend.db import SessionMaker, read_session
from backend.models import Job, JobStatus, utcnow

WINDOW = timedelta(hours=1)
QUANTILES = (0.5, 0.9, 0.99)


class _Snapshot(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def _summary(name: str, doc: str, values: list[float]) -> GaugeMetricFamily:
    """Quantiles over the window, as a gauge labelled by quantile (what a summary exposes)."""
    family = GaugeMetricFamily(name, doc, labels=["quantile"])
    if values:
        ordered = sorted(values)
        for q in QUANTILES:
            family.add_metric([str(q)], ordered[min(len(ordered) - 1, int(q * len(ordered)))])
    return family


async def render_metrics(sessionmaker: SessionMaker) -> bytes:
    session = await read_session(sessionmaker)
    since = utcnow() - WINDOW
    async with session:
        by_state = dict((await session.execute(select(Job.status, func.count()).group_by(Job.status))).all())
        depth = dict(
            (
                await session.execute(
                    select(Job.kind, func.count()).where(Job.status == JobStatus.queued).group_by(Job.kind)
                )
            ).all()
        )
        errors = dict(
            (
                await session.execute(
                    select(Job.error_code, func.count())
                    .where(Job.error_code.like("comfy_%"))
                    .group_by(Job.error_code)
                )
            ).all()
        )
        recent = (
            await session.execute(
                select(Job.created_at, Job.started_at, Job.submitted_at, Job.finished_at, Job.params).where(
                    Job.status == JobStatus.succeeded, Job.finished_at > since
                )
            )
        ).all()

    states = GaugeMetricFamily("studio_jobs", "Jobs by state", labels=["state"])
    for state in JobStatus:
        states.add_metric([state.value], float(by_state.get(state.value, 0)))
    queue = GaugeMetricFamily("studio_queue_depth", "Queued jobs by kind", labels=["kind"])
    for kind in sorted({"text", "sketch", *depth}):
        queue.add_metric([str(kind)], float(depth.get(kind, 0)))
    comfy = CounterMetricFamily(
        "studio_comfyui_errors", "Jobs failed by ComfyUI, by error code", labels=["code"]
    )
    for code, n in errors.items():
        comfy.add_metric([str(code)], float(n))
    latency = [(r.finished_at - r.created_at).total_seconds() for r in recent]
    steps = [
        (r.finished_at - r.submitted_at).total_seconds() / max(1, int(r.params.get("steps", 1)))
        for r in recent
        if r.submitted_at is not None
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        _Snapshot(
            [
                states,
                queue,
                comfy,
                _summary(
                    "studio_job_latency_seconds",
                    "Request to stored images, succeeded jobs of the last hour",
                    latency,
                ),
                _summary("studio_step_latency_seconds", "Render time per sampler step, last hour", steps),
                GaugeMetricFamily(
                    "studio_job_latency_mean_seconds",
                    "Mean job latency, last hour",
                    value=statistics.fmean(latency) if latency else 0.0,
                ),
            ]
        )
    )
    return generate_latest(registry)
