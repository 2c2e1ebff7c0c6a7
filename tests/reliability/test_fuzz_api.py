"""Property-based fuzzing of every route from the OpenAPI document (schemathesis) against a live API on
SQLite and PostgreSQL: no request, however odd, gets a 500, and every response matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import job_body
from tests.support.backend import DEMO_TOKEN, Stack, start_stack

MAX_EXAMPLES = 25


@pytest.fixture
def fuzz_stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    limits = {"max_active_jobs_per_designer": 10_000, "max_uploads_per_hour": 10_000}
    waits = {"dropin_wait_s": 0.5, "prefer_wait_max_s": 1}  # no ComfyUI: every render waits in vain
    with start_stack(db_url, tmp_path, None, **limits, **waits) as stack:
        yield stack


def test_no_route_answers_500_or_breaks_its_schema(fuzz_stack: Stack) -> None:
    with fuzz_stack.client() as c:  # something to find, so ids in paths sometimes exist
        c.post("/api/jobs", json=job_body())
    schema = schemathesis.openapi.from_url(f"{fuzz_stack.url}/openapi.json")
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, "every route is in the OpenAPI document"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case: Case) -> None:
            if case.path.endswith("/events") and case.method.upper() == "GET":
                return  # a stream: covered by the event tests (it stays open while a job runs)
            case.call_and_validate(headers=headers, timeout=10, checks=checks)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert failures == [], "\n\n".join(failures)
