"""The typed client's templates against the running stack (SQLite and PostgreSQL, ComfyUI, a dispatcher):
a lead validates, drafts, publishes, rolls back, retires and restores; a designer runs the template."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.models import Role
from backend.users import set_role
from studio_client import AsyncStudioClient, RetryPolicy, StudioClient, StudioError
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, DispatcherThread, Stack
from tests.support.template_decls import NAME, declaration, make_lead

FAST = RetryPolicy(attempts=3, backoff_s=0.05, max_backoff_s=0.2)
WAIT_S = 60


@pytest.fixture
def lead(stack: Stack) -> Iterator[StudioClient]:
    make_lead(stack, "alice")
    with StudioClient(stack.url, DEMO_TOKEN, retry=FAST, poll_s=0.2) as client:
        yield client


@pytest.fixture
def designer(stack: Stack) -> Iterator[StudioClient]:
    with StudioClient(stack.url, OTHER_TOKEN, retry=FAST, poll_s=0.2) as client:
        yield client


@pytest.fixture
def dispatcher(stack: Stack) -> Iterator[DispatcherThread]:
    d = stack.dispatcher_thread().start()
    yield d
    d.stop()


def test_a_lead_validates_drafts_publishes_and_a_designer_renders_the_template(
    lead: StudioClient, designer: StudioClient, dispatcher: DispatcherThread
) -> None:
    assert {"text", "sketch"} <= {t.name for t in designer.templates() if t.builtin}
    assert lead.validate_template(declaration()).ok
    draft = lead.create_template(declaration())
    assert draft.template.name == NAME and draft.template.is_draft and draft.report.ok
    assert NAME not in [t.name for t in designer.templates()]  # a draft: its owner's alone
    published = lead.publish_template(NAME)
    assert (published.version, published.created) == (1, True)
    lead.update_draft(NAME, declaration())
    again = lead.publish_template(NAME)
    assert (again.version, again.created) == (1, False)  # the same content: no new version

    template = designer.get_template(NAME)
    assert template.current_version == 1 and [v.version for v in template.versions] == [1]
    steps = next(i for i in template.inputs if i.key == "steps")
    assert (steps.kind, steps.constraints.min, steps.constraints.max, steps.default) == ("integer", 2, 30, 6)
    seed = next(i for i in template.inputs if i.key == "seed")
    assert seed.constraints.max is not None and seed.constraints.max >= 2**53  # an exact integer
    assert designer.get_template_version(NAME, 1).graph is None  # the graph is the leads'
    assert lead.get_template_version(NAME, 1).graph is not None

    job = designer.create_template_job(NAME, {"prompt": "a calm bedroom, linen, oak", "steps": 4, "seed": 9})
    assert job.template is not None and job.template.name == NAME
    done = designer.wait(job.id, timeout_s=WAIT_S)
    assert done.status == "succeeded" and done.seed == 9 and len(done.images) == 1
    assert done.template is not None and (done.template.name, done.template.version) == (NAME, 1)
    assert [p.label for p in done.passes] == ["Draft pass"]
    assert designer.image_bytes(done.passes[0].url).startswith(b"\x89PNG")


def test_refusals_name_the_input_or_the_node(lead: StudioClient, designer: StudioClient) -> None:
    doc = declaration()
    doc["graph"]["3"]["inputs"]["scheduler"] = "no_such_scheduler"
    report = lead.validate_template(doc)
    assert not report.ok
    problem = next(p for p in report.problems if p.node_id == "3")
    assert (problem.class_type, problem.input, problem.field) == (
        "KSampler",
        "scheduler",
        "graph.3.inputs.scheduler",
    )
    with pytest.raises(StudioError) as refused:
        lead.create_template(doc)
    assert (refused.value.status, refused.value.code) == (422, "template_invalid")
    assert any(d.node_id == "3" and d.input == "scheduler" for d in refused.value.details)
    assert lead.get_template(NAME).draft_report is not None  # the invalid draft is kept with its report

    with pytest.raises(StudioError) as forbidden:
        designer.validate_template(declaration())
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden_role")

    lead.update_draft(NAME, declaration())
    lead.publish_template(NAME)
    with pytest.raises(StudioError) as bad_value:
        designer.create_template_job(NAME, {"prompt": "a hall", "steps": 80})
    assert bad_value.value.status == 422
    assert any("steps" in f for f in bad_value.value.fields()), bad_value.value.fields()


def test_roll_back_retire_and_restore(lead: StudioClient, designer: StudioClient) -> None:
    lead.create_template(declaration())
    lead.publish_template(NAME)
    narrower = declaration()
    narrower["inputs"][2]["constraints"]["max"] = 20
    lead.update_draft(NAME, narrower)
    assert lead.publish_template(NAME).version == 2
    back = lead.rollback_template(NAME, 1)
    assert back.current_version == 1
    assert designer.get_template(NAME).current_version == 1
    assert lead.retire_template(NAME).retired
    assert NAME not in [t.name for t in designer.templates()]
    assert NAME in [t.name for t in lead.templates(include_retired=True)]
    with pytest.raises(StudioError):
        designer.create_template_job(NAME, {"prompt": "a hall"})
    assert not lead.restore_template(NAME).retired
    assert NAME in [t.name for t in designer.templates()]


async def test_the_async_client_publishes_and_runs_a_template_too(
    stack: Stack, dispatcher: DispatcherThread
) -> None:
    await set_role(stack.settings, "alice", Role.lead)
    async with AsyncStudioClient(stack.url, DEMO_TOKEN, retry=FAST, poll_s=0.2) as studio:
        assert (await studio.validate_template(declaration())).ok
        assert (await studio.create_template(declaration())).template.is_draft
        assert (await studio.publish_template(NAME)).created
        assert (await studio.get_template(NAME)).current_version == 1
        assert (await studio.get_template_version(NAME, 1)).version == 1
        job = await studio.create_template_job(NAME, {"prompt": "a sunny kitchen", "steps": 3}, version=1)
        done = await studio.wait(job.id, timeout_s=WAIT_S)
        assert done.status == "succeeded" and done.template is not None and done.template.version == 1
        assert (await studio.retire_template(NAME)).retired
        assert NAME not in [t.name for t in await studio.templates()]
        assert not (await studio.restore_template(NAME)).retired
        assert (await studio.rollback_template(NAME, 1)).current_version == 1
