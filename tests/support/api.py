"""What test modules ask of the API over and over: the one error shape, a job's status, waiting for one."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.net import wait_until


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """`r` is the one error shape with this status and code; the error object."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert isinstance(body["error"]["details"], list), body
    error: dict[str, Any] = body["error"]
    return error


def job_status(c: httpx.Client, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = c.get(f"/api/jobs/{job_id}").json()
    return job


def wait_status(c: httpx.Client, job_id: str, statuses: set[str], timeout_s: float = 30) -> dict[str, Any]:
    holder: dict[str, Any] = {}

    def reached() -> bool:
        holder["job"] = job_status(c, job_id)
        return holder["job"]["status"] in statuses

    wait_until(reached, timeout_s, 0.05, f"job {job_id} to reach {statuses}")
    job: dict[str, Any] = holder["job"]
    return job
