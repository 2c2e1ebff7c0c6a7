"""Property-based fuzzing of every route from the OpenAPI document (schemathesis, every check it has)
against a live API on SQLite and PostgreSQL: no request, however odd, gets a 500; every response matches
the schema; every status is documented; what the schema allows is accepted and what it forbids refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode

from tests.factories import job_body, sketch_png
from tests.support.backend import DEMO_TOKEN, Stack, start_stack
from tests.support.cutout import write_matte_model

MAX_EXAMPLES = 25


def _sketches(fmt: str) -> st.SearchStrategy[bytes]:
    """What the upload's declared part types are to a generator: real sketches, a few sizes."""
    return st.sampled_from([sketch_png(600 + i, 400 + i, fmt=fmt) for i in range(3)])


# The upload route declares its file part's types (its request body's `encoding`); schemathesis draws
# each from the strategy registered for it.
for _fmt, _type in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
    schemathesis.openapi.media_type(_type, _sketches(_fmt))


def _modes(document: dict[str, Any], path: str, method: str) -> list[GenerationMode]:
    """Positive always; negative where there is an input to get wrong (none: nothing to generate)."""
    operation = document["paths"][path][method.lower()]
    if operation.get("parameters") or operation.get("requestBody") or operation.get("security"):
        return list(GenerationMode)
    return [GenerationMode.POSITIVE]


@pytest.fixture
def fuzz_stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    limits = {"max_active_jobs_per_designer": 10_000, "max_uploads_per_hour": 10_000}
    waits = {"dropin_wait_s": 0.5, "prefer_wait_max_s": 1}  # no ComfyUI: every render waits in vain
    # a background-removal model in place, as on a deployed API host (without it product photos are 503)
    model = write_matte_model(tmp_path / "models" / "rembg" / "u2net.onnx")
    with start_stack(db_url, tmp_path, None, **limits, **waits, rembg_model_path=model) as stack:
        yield stack


@pytest.mark.timeout(900)  # every route of the document, both modes: minutes, not seconds
def test_no_route_answers_500_or_breaks_its_schema(fuzz_stack: Stack) -> None:
    with fuzz_stack.client() as c:  # something to find, so ids in paths sometimes exist
        c.post("/api/jobs", json=job_body())
    schema = schemathesis.openapi.from_url(f"{fuzz_stack.url}/openapi.json")
    document = httpx.get(f"{fuzz_stack.url}/openapi.json").json()
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, "every route is in the OpenAPI document"
    runs = [(o, m) for o in operations for m in _modes(document, o.path, o.method)]
    for operation, mode in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case: Case) -> None:
            if case.path.endswith("/events") and case.method.upper() == "GET":
                return  # a stream: covered by the event tests (it stays open while a job runs)
            if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):  # noqa: B023 (called below)
                # A webhook target is judged by what its host resolves to and by the server's allow-list,
                # which no schema can say: tests/backend/test_webhook_targets.py walks those rules.
                case.body.pop("webhook_url", None)
                # What an upload's role accepts depends on the picture (a sketch is no style photo, a product
                # photo needs a product and the server's model): tests/backend/test_upload_roles.py walks it.
                if case.path == "/api/uploads":
                    case.body["role"] = "sketch"
                # A share link's end is judged against the clock (in the future, at most 90 days ahead),
                # which no schema can say: tests/backend/test_share_links.py walks it.
                if case.path == "/api/share-links":
                    case.body.pop("expires_at", None)
            response = case.call(headers=headers, timeout=10)
            if mode is GenerationMode.NEGATIVE and response.status_code == 413:  # noqa: B023 (called below)
                # A body past the route's cap is refused before it is read (413, documented on every route
                # with a body): a rejection, which schemathesis' list of rejecting statuses leaves out.
                return
            case.validate_response(response, headers=headers)  # every check schemathesis has

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, reported together
            failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    assert failures == [], "\n\n".join(failures)
