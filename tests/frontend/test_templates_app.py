"""Templates in the studio through AppTest, against a real backend and ComfyUI on loopback: the form a
declaration makes, values refused before submit, markup shown as text, the leads' Templates page."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from frontend.components import escape
from frontend.template_form import widget_key
from tests.factories import sketch_png
from tests.frontend.conftest import signed_in
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, DispatcherThread, Stack
from tests.support.template_decls import NAME, declaration, make_lead, publish, sketch_declaration


@pytest.fixture
def ui_stack(ui_stack: Stack) -> Stack:
    """The backend with alice a lead (she publishes) and bob a designer (he renders)."""
    make_lead(ui_stack, "alice")
    return ui_stack


def field(name: str) -> str:
    return widget_key(NAME, name)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_a_designer_gets_the_form_its_declaration_makes_and_renders_it(
    ui_stack: Stack, dispatcher: DispatcherThread
) -> None:
    publish(ui_stack, declaration(), DEMO_TOKEN)
    at = signed_in(OTHER_TOKEN)
    assert at.session_state["can_publish"] is False  # a designer: no Templates page
    picker = at.selectbox(key="w_template")
    assert "Quick room draft" in picker.options
    picker.set_value(NAME).run()
    assert not at.exception, at.exception
    prompt = at.text_area(key=field("prompt"))
    assert prompt.label == "Describe the room" and prompt.max_chars == 400
    assert prompt.value.startswith("sunlit reading corner")
    steps = at.number_input(key=field("steps"))
    assert steps.value == 6 and steps.label == "Steps"
    assert at.selectbox(key=field("sampler")).options == ["euler", "dpmpp_2m"]
    assert at.radio(key=field("style")).value == "indochine"
    assert at.toggle(key=field("seed") + "_random").value is True
    captions = [c.value for c in at.caption]
    assert escape("From 2 to 30.") in captions  # the limits, shown before they are hit
    assert escape("At most 400 characters.") in captions

    at.number_input(key=field("steps")).set_value(80).run()
    assert escape("80 is above the maximum, 30.") in errors(at)
    assert at.button(key="render_template").disabled  # refused before submit: nothing is sent
    with ui_stack.client(OTHER_TOKEN) as c:
        assert c.get("/api/jobs").json()["items"] == []

    at.number_input(key=field("steps")).set_value(8)
    at.toggle(key=field("seed") + "_random").set_value(False).run()
    at.number_input(key=field("seed")).set_value(77).run()
    assert not errors(at) and not at.button(key="render_template").disabled
    at.button(key="render_template").click().run()
    assert not at.exception, at.exception
    assert not errors(at), errors(at)
    job_id = at.query_params["job"]
    with ui_stack.client(OTHER_TOKEN) as c:
        job = c.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["kind"] == NAME and job["seed"] == 77
    assert job["template"] == {"name": NAME, "version": 1}
    assert job["params"]["steps"] == 8 and job["params"]["sampler"] == "euler"
    assert [p["label"] for p in job["passes"]] == ["Draft pass"]
    assert "Download" in [d.label for d in at.get("download_button")]
    assert "Passes" in [c.value for c in at.caption]
    assert [i.captions for i in at.image if i.captions == ["Draft pass"]]  # the pass strip
    assert any(t.value.startswith(f"Template: {NAME} · version 1") for t in at.text)


def test_titles_labels_and_help_with_markup_are_shown_as_text(ui_stack: Stack) -> None:
    doc = declaration(title="<b>Bold</b> **room**")
    doc["inputs"][2]["label"] = "<i>Steps</i> [x](javascript:alert(1))"
    doc["inputs"][2]["help"] = "<script>alert(2)</script>"
    publish(ui_stack, doc, DEMO_TOKEN)
    at = signed_in(OTHER_TOKEN)
    at.selectbox(key="w_template").set_value(NAME).run()
    assert not at.exception, at.exception
    assert "<b>Bold</b> **room**" in at.selectbox(key="w_template").options  # options are plain text
    steps = at.number_input(key=field("steps"))
    assert steps.label == escape("<i>Steps</i> [x](javascript:alert(1))")
    assert steps.help is not None and escape("<script>alert(2)</script>") in steps.help
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any(escape("<b>Bold</b> **room**") in v for v in shown)
    assert not any("<b>" in v or "<script>" in v or "](javascript:" in v for v in shown), shown


def test_the_backends_refusal_is_shown_on_its_field_until_the_value_changes(ui_stack: Stack) -> None:
    publish(ui_stack, declaration(), DEMO_TOKEN)
    at = signed_in(OTHER_TOKEN)
    at.session_state["tpl_refused"] = {NAME: {"steps": {"message": "must be at most 5", "value": 6}}}
    at.selectbox(key="w_template").set_value(NAME).run()
    assert errors(at) == [escape("must be at most 5")]
    assert at.button(key="render_template").disabled
    at.number_input(key=field("steps")).set_value(4).run()
    assert not errors(at)


def test_a_lead_uploads_checks_publishes_rolls_back_retires_and_restores(ui_stack: Stack) -> None:
    at = signed_in(DEMO_TOKEN)
    assert at.session_state["can_publish"] is True
    at.switch_page("views/templates.py").run()
    assert not at.exception, at.exception
    doc = declaration()
    graph = doc.pop("graph")
    uploader = at.file_uploader(key="w_tpl_graph_file")
    uploader.upload("quick-draft.json", json.dumps(graph).encode(), "application/json").run()
    drafted = json.loads(at.text_area(key="w_tpl_decl").value)  # a skeleton from the graph
    assert drafted["name"] == "quick-draft" and drafted["outputs"]["results"] == ["9", "20"]
    assert {"prompt", "seed", "steps"} <= {i["key"] for i in drafted["inputs"]}

    at.text_area(key="w_tpl_decl").set_value(json.dumps(doc)).run()
    at.button(key="tpl_check").click().run()
    assert not at.exception, at.exception
    assert any("valid" in s.value for s in at.success), [e.value for e in at.error]
    at.button(key="tpl_publish").click().run()
    assert any("version 1 is live" in s.value for s in at.success), errors(at)

    doc["inputs"][2]["constraints"]["max"] = 20  # new content: a new version
    at.text_area(key="w_tpl_decl").set_value(json.dumps(doc)).run()
    at.button(key="tpl_publish").click().run()
    assert any("version 2 is live" in s.value for s in at.success), errors(at)
    at.button(key=f"tpl_rollback_{NAME}_1").click().run()
    assert any("back on version 1" in s.value for s in at.success), errors(at)
    with ui_stack.client(OTHER_TOKEN) as c:
        assert c.get(f"/api/templates/{NAME}").json()["current_version"] == 1

    at.button(key=f"tpl_retire_{NAME}").click().run()
    with ui_stack.client(OTHER_TOKEN) as c:
        assert NAME not in [t["name"] for t in c.get("/api/templates").json()["items"]]
    at.button(key=f"tpl_restore_{NAME}").click().run()
    with ui_stack.client(OTHER_TOKEN) as c:
        assert NAME in [t["name"] for t in c.get("/api/templates").json()["items"]]


def test_an_invalid_declaration_lists_its_problems_and_a_ui_format_file_says_how_to_export(
    ui_stack: Stack,
) -> None:
    at = signed_in(DEMO_TOKEN)
    at.switch_page("views/templates.py").run()
    doc = declaration()
    graph = doc.pop("graph")
    graph["3"]["inputs"]["scheduler"] = "no_such_scheduler"  # a literal no input fills
    at.file_uploader(key="w_tpl_graph_file").upload("g.json", json.dumps(graph).encode(), "application/json")
    at.run()
    at.text_area(key="w_tpl_decl").set_value(json.dumps(doc)).run()
    at.button(key="tpl_check").click().run()
    assert not at.exception, at.exception
    assert errors(at)
    problems = at.dataframe[0].value
    row = problems[problems["node_id"] == "3"].iloc[0]
    assert row["class_type"] == "KSampler" and row["input"] == "scheduler"
    assert row["field"] == "graph.3.inputs.scheduler" and row["instance"]
    assert any("cannot run it" in t.value for t in at.text)  # each instance's verdict

    ui_format = {"nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}
    at.file_uploader(key="w_tpl_graph_file").upload(
        "ui.json", json.dumps(ui_format).encode(), "application/json"
    )
    at.run()
    assert any("UI-format" in w.value for w in at.warning)
    at.button(key="tpl_check").click().run()
    assert any("API" in e for e in errors(at)), errors(at)


def test_an_image_input_is_uploaded_previewed_and_a_small_one_refused(ui_stack: Stack) -> None:
    doc = sketch_declaration(min_width=700, min_height=500)
    publish(ui_stack, doc, DEMO_TOKEN)
    at = signed_in(OTHER_TOKEN)
    at.selectbox(key="w_template").set_value(doc["name"]).run()
    upload = at.file_uploader(key=widget_key(doc["name"], "upload_id"))
    assert upload.label == "Your sketch"
    assert escape("At least 700 × 500 px; PNG, JPEG or WebP.") in [c.value for c in at.caption]
    assert errors(at) == [escape("This field is required.")] * 2  # no prompt yet, no sketch yet
    at.text_area(key=widget_key(doc["name"], "prompt")).input("open-plan living room, oak floor")
    upload.upload("plan.png", sketch_png(640, 480), "image/png").run()
    assert not at.exception, at.exception
    assert errors(at) == [escape("The image is 640 × 480 px; it must be at least 700 × 500 px.")]
    assert at.button(key="render_template").disabled
    at.file_uploader(key=widget_key(doc["name"], "upload_id")).upload(
        "plan.png", sketch_png(900, 600), "image/png"
    ).run()
    assert not errors(at), errors(at)
    assert "900 × 600 px" in [c.value for c in at.caption]
    (preview,) = at.image  # the style cards have no rendered previews yet: each is a designed card
    assert preview.proto.imgs[0].alt.startswith("Your image for")
    assert not at.button(key="render_template").disabled


def test_edit_settings_of_a_template_render_loads_its_values_into_its_form(ui_stack: Stack) -> None:
    publish(ui_stack, declaration(), DEMO_TOKEN)
    inputs = {"prompt": "loft kitchen, concrete and walnut", "steps": 9, "seed": 55, "sampler": "dpmpp_2m"}
    with ui_stack.client(OTHER_TOKEN) as c:
        job = c.post("/api/jobs", json={"template": NAME, "inputs": inputs})
        assert job.status_code == 201, job.text
        c.post(f"/api/jobs/{job.json()['id']}/cancel")
    at = signed_in(OTHER_TOKEN)
    at.switch_page("views/gallery.py").run()
    at.button(key=f"edit_{job.json()['id']}").click().run()
    assert not at.exception, at.exception
    assert at.session_state["w_template"] == NAME
    assert at.text_area(key=field("prompt")).value == "loft kitchen, concrete and walnut"
    assert at.number_input(key=field("steps")).value == 9
    assert at.selectbox(key=field("sampler")).value == "dpmpp_2m"
    assert at.toggle(key=field("seed") + "_random").value is False
    assert at.number_input(key=field("seed")).value == 55
