"""What the product promises after any fault, checked through the real API and the emulator's counters.

Every accepted job ends exactly once in succeeded, failed or cancelled; a succeeded job's images exist and
are PNGs; ComfyUI executed each prompt at most once more than the backend recorded submitting it (the one
more: a dispatcher killed between POST /prompt and recording it, whose prompt is then found and followed,
or lost with a killed ComfyUI and submitted again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

FINAL = ("succeeded", "failed", "cancelled")
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Outcome:
    statuses: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error_codes: Counter[str] = field(default_factory=Counter)  # of the failed jobs

    def count(self, status: str) -> int:
        return sum(s == status for s in self.statuses.values())


def final_events(c: httpx.Client, job_id: str) -> list[str]:
    """The job's stored final events (the SSE replay ends after the final event)."""
    with c.stream("GET", f"/api/jobs/{job_id}/events", timeout=30) as r:
        body = r.read().decode()
    return [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("event: ")
            and line.split(": ", 1)[1] in FINAL]  # fmt: skip


def check(c: httpx.Client, job_ids: Iterable[str], executions: dict[str, int] | None = None) -> Outcome:
    """Problems (empty when every promise holds) and each job's final status."""
    outcome = Outcome()
    for job_id in job_ids:
        job: dict[str, Any] = c.get(f"/api/jobs/{job_id}").json()
        outcome.statuses[job_id] = job["status"]
        if job["status"] not in FINAL:
            outcome.problems.append(f"{job_id}: lost, still {job['status']}")
            continue
        finals = final_events(c, job_id)
        if finals != [job["status"]]:
            outcome.problems.append(f"{job_id}: final events {finals}, status {job['status']}")
        if job["status"] == "succeeded":
            if len(job["images"]) != job["params"]["num_images"]:
                outcome.problems.append(
                    f"{job_id}: {len(job['images'])} images of {job['params']['num_images']}"
                )
            for image in job["images"]:
                r = c.get(image["url"], follow_redirects=True)
                if r.status_code != 200 or not r.content.startswith(PNG):
                    outcome.problems.append(f"{job_id}: image {image['id']} unreadable ({r.status_code})")
        if job["status"] == "failed":
            outcome.error_codes[(job.get("error") or {}).get("code", "?")] += 1
        if job["status"] != "succeeded" and job["images"]:
            outcome.problems.append(f"{job_id}: {job['status']} but has images")
        if executions is not None and executions.get(job_id, 0) > job["attempts"] + 1:
            outcome.problems.append(
                f"{job_id}: ComfyUI ran it {executions[job_id]} times for {job['attempts']} submissions"
            )
    return outcome
