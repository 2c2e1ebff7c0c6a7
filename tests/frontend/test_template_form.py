"""The generated form's rules without a browser: limits in words, values refused with a reason, the
backend's 422 field paths back to input keys, and the first declaration drafted from a graph."""

from __future__ import annotations

from typing import Any

from frontend.template_form import check, limits_text, server_errors
from frontend.template_skeleton import is_api_format, is_ui_format, skeleton, slug
from studio_client import ErrorDetail, StudioError
from tests.support.template_decls import declaration, graph


def decl(kind: str, **constraints: Any) -> dict[str, Any]:
    return {"key": "k", "label": "K", "kind": kind, "constraints": constraints}


def test_numbers_are_refused_outside_their_limits_and_off_their_step() -> None:
    steps = decl("integer", min=2, max=30)
    assert limits_text(steps) == "From 2 to 30."
    assert check(steps, 2) is None and check(steps, 30) is None
    assert check(steps, 31) == "31 is above the maximum, 30."
    assert check(steps, 1) == "1 is below the minimum, 2."
    width = decl("integer", min=256, max=1024, step=8)
    assert limits_text(width) == "From 256 to 1024, in steps of 8."
    assert check(width, 264) is None
    assert check(width, 260) == "Use steps of 8 from 256."
    cfg = decl("number", min=1.0, max=20.0, step=0.5)
    assert check(cfg, 7.5) is None and check(cfg, 7.25) is not None and check(cfg, 20.5) is not None


def test_texts_have_a_length_limit_and_required_fields_must_be_filled() -> None:
    prompt = decl("long_text", max_length=10)
    assert limits_text(prompt) == "At most 10 characters."
    assert check(prompt, "a" * 10) is None
    assert check(prompt, "a" * 11) == "At most 10 characters (now 11)."
    assert check(prompt, "") == "This field is required."
    assert check({**prompt, "required": False}, "") is None


def test_a_seed_may_be_random_and_choices_must_be_listed() -> None:
    seed = decl("seed")
    assert check(seed, None) is None and check(seed, 5) is None and check(seed, -1) is not None
    assert limits_text(seed) == f"From 0 to {2**64 - 1}."
    sampler = decl("choice", choices=["euler", "dpmpp_2m"])
    assert check(sampler, "euler") is None and check(sampler, "ddim") is not None
    assert limits_text(decl("image", min_width=512, min_height=384)).startswith("At least 512 × 384 px")


def test_the_backends_field_paths_come_back_to_their_inputs() -> None:
    err = StudioError(
        422,
        "invalid_input",
        "inputs.steps: too big",
        [
            ErrorDetail(field="inputs.steps", message="must be at most 30"),
            ErrorDetail(field="body.inputs.prompt", message="too long"),
            ErrorDetail(field="template", message="not this one"),
        ],
    )
    assert server_errors(err) == {"steps": "must be at most 30", "prompt": "too long"}


def test_a_skeleton_offers_the_graphs_literals_and_its_saveimage_nodes() -> None:
    doc = skeleton(graph(), "Quick Room Draft.json")
    assert doc["name"] == "quick-room-draft" and doc["title"] == "Quick room draft"
    by_key = {d["key"]: d for d in doc["inputs"]}
    assert by_key["prompt"]["kind"] == "long_text" and by_key["prompt"]["targets"] == [["6", "text"]]
    assert by_key["negative_prompt"]["targets"] == [["7", "text"]]
    assert by_key["seed"]["kind"] == "seed" and "default" not in by_key["seed"]
    assert by_key["steps"] == {
        "key": "steps",
        "label": "Steps",
        "kind": "integer",
        "help": "More steps: finer detail, slower",
        "default": 25,
        "targets": [["3", "steps"]],
    }
    assert by_key["checkpoint"]["folder"] == "checkpoints"
    assert "model" not in by_key  # a linked input is not offered
    assert doc["outputs"] == {"results": ["9", "20"], "passes": []}


def test_api_and_ui_formats_are_told_apart() -> None:
    assert is_api_format(declaration()["graph"]) and not is_ui_format(declaration()["graph"])
    ui = {"nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}
    assert is_ui_format(ui) and not is_api_format(ui)
    assert slug("!!.json") == "my-template"
