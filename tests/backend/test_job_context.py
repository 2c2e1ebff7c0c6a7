"""The executors' gateway: the only way they reach job state, and the one place a failure is logged."""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import job_body
from tests.support.api import job_status
from tests.support.backend import Stack, start_stack
from tests.support.comfy import EmulatorProcess
from tests.support.harness import ROOT

QUEUE_MODULES = {"backend.job_queue", "backend.claims", "backend.job_queries"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def test_no_executor_imports_the_queue() -> None:
    executors = sorted((ROOT / "backend" / "executors").glob("*.py"))
    assert executors
    for path in executors:
        assert not _imports(path) & QUEUE_MODULES, f"{path.name} imports the queue: use the JobGateway"


@pytest.fixture
def failing_stack(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> Iterator[Stack]:
    emulator.set_faults(fail_next=1)  # the sampler raises while the prompt runs
    with start_stack(db_url, tmp_path, emulator.url) as stack:
        yield stack


def test_a_failure_during_execution_is_logged_once_with_its_node(
    failing_stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with failing_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        failing_stack.drain()
        done = job_status(c, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "comfy_execution_error"
    failed = [r for r in caplog.records if getattr(r, "action", None) == "job_failed"]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    [record] = failed
    assert (record.job_id, record.node_type) == (job["id"], "KSampler")  # type: ignore[attr-defined]
    node_id = record.node_id  # type: ignore[attr-defined]
    assert f"node {node_id}" in done["error"]["message"]
    assert job["id"] in record.getMessage() and "fault injection" in record.getMessage()
