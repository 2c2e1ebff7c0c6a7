"""parse_declaration: field paths for every fault, plain text kept as text, hostile documents refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.templates import DeclarationError, load_declaration_json, parse_declaration
from tests.contract.object_infos import WORKFLOWS


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "two-pass",
        "title": "Two passes",
        "description": "Draft, then refine.",
        "graph": json.loads((WORKFLOWS / "txt2img.json").read_text()),
        "inputs": [
            {"key": "prompt", "label": "Describe the room", "kind": "long_text", "targets": [["6", "text"]]},
            {"key": "steps", "label": "Steps", "kind": "integer", "targets": [["3", "steps"]], "default": 20},
        ],
        "outputs": {"results": ["9"]},
    }
    return {**base, **changes}


def errors(document: Any) -> list[dict[str, str]]:
    with pytest.raises(DeclarationError) as caught:
        parse_declaration(document)
    return caught.value.errors


def with_input(**changes: Any) -> dict[str, Any]:
    item = {"key": "x", "label": "X", "kind": "integer", "targets": [["3", "steps"]], **changes}
    return doc(inputs=[item])


def test_a_good_declaration_parses() -> None:
    decl = parse_declaration(doc())
    assert decl.name == "two-pass" and [i.key for i in decl.inputs] == ["prompt", "steps"]
    assert decl.input("steps").has_default and not decl.input("prompt").has_default
    assert decl.inputs[0].targets == [("6", "text")]


def test_markup_in_title_label_and_help_is_kept_as_plain_text() -> None:
    markup = "<b>Room</b> & <script>alert(1)</script>"
    decl = parse_declaration(
        doc(title=markup, inputs=[{**doc()["inputs"][0], "label": markup, "help": markup}])
    )
    assert decl.title == decl.inputs[0].label == decl.inputs[0].help == markup


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"name": "Two Pass"}, "name", "String should match pattern '^[a-z0-9][a-z0-9-]{1,39}$'"),
        ({"title": "a\x00b"}, "title", "must not contain control characters (one line of plain text)"),
        ({"title": "two\nlines"}, "title", "must not contain control characters (one line of plain text)"),
        ({"title": "   "}, "title", "must not be empty or only spaces"),
        ({"title": "x" * 101}, "title", "String should have at most 100 characters"),
        ({"description": "x\x07"}, "description", "must not contain control characters"),
        ({"description": "x" * 2001}, "description", "String should have at most 2000 characters"),
        ({"graph": {}}, "graph", "Dictionary should have at least 1 item after validation, not 0"),
        (
            {"outputs": {"results": []}},
            "outputs.results",
            "List should have at least 1 item after validation, not 0",
        ),
        (
            {"outputs": {"results": ["9"], "passes": [{"node": "9", "label": "again"}]}},
            "outputs",
            "a node is listed twice in results and passes",
        ),
        ({"extra": 1}, "extra", "Extra inputs are not permitted"),
    ],
)
def test_a_malformed_declaration_names_the_field(changes: dict[str, Any], field: str, message: str) -> None:
    assert errors(doc(**changes)) == [{"field": field, "message": message}]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"key": "Prompt"}, "inputs.0.key", "String should match pattern '^[a-z][a-z0-9_]{0,39}$'"),
        (
            {"label": "a\u0085b"},
            "inputs.0.label",
            "must not contain control characters (one line of plain text)",
        ),
        ({"help": "x" * 301}, "inputs.0.help", "String should have at most 300 characters"),
        (
            {"kind": "colour"},
            "inputs.0.kind",
            "Input should be 'short_text', 'long_text', 'integer', 'number', "
            "'choice', 'seed', 'image', 'style' or 'model'",
        ),
        ({"targets": [["3"]]}, "inputs.0.targets.0.1", "Field required"),
        (
            {"targets": [["3", "steps"]] * 17},
            "inputs.0.targets",
            "List should have at most 16 items after validation, not 17",
        ),
        ({"targets": [["3", "steps"], ["3", "steps"]]}, "inputs.0", "targets must not repeat"),
        ({"constraints": {"min": 5, "max": 1}}, "inputs.0.constraints", "min 5 is above max 1"),
        ({"constraints": {"choices": ["a"]}}, "inputs.0", "an integer input takes no constraint choices"),
        ({"constraints": {"step": 0}}, "inputs.0.constraints.step", "Input should be greater than 0"),
        ({"constraints": {"colour": 1}}, "inputs.0.constraints.colour", "Extra inputs are not permitted"),
        ({"folder": "loras"}, "inputs.0", "folder is for a model input only"),
        (
            {"kind": "style", "targets": []},
            "inputs.0",
            "a style input has a style block; other kinds have none",
        ),
        (
            {"kind": "style", "targets": [["3", "steps"]], "style": {}},
            "inputs.0",
            "a style input acts through its style block: targets must be empty",
        ),
        ({"line_art": {"invert_node": "12"}}, "inputs.0", "line_art is for an image input only"),
        ({"unknown": True}, "inputs.0.unknown", "Extra inputs are not permitted"),
    ],
)
def test_a_malformed_input_names_its_field(changes: dict[str, Any], field: str, message: str) -> None:
    assert errors(with_input(**changes)) == [{"field": field, "message": message}]


def test_input_keys_are_unique() -> None:
    twice = doc(inputs=[doc()["inputs"][1], doc()["inputs"][1]])
    assert errors(twice) == [{"field": "", "message": "input keys must be unique: steps repeated"}]


def test_at_most_60_inputs() -> None:
    many = doc(inputs=[{**doc()["inputs"][1], "key": f"k{i}"} for i in range(61)])
    assert errors(many) == [
        {"field": "inputs", "message": "List should have at most 60 items after validation, not 61"}
    ]


def test_1001_nodes_and_2_mib_are_refused_before_validation() -> None:
    graph = {str(i): {"class_type": "X", "inputs": {}} for i in range(1001)}
    assert errors(doc(graph=graph)) == [
        {"field": "graph", "message": "a graph has at most 1000 nodes (this one has 1001)"}
    ]
    big = doc()
    big["graph"]["9"]["inputs"]["filename_prefix"] = "x" * (2 * 1024 * 1024)
    (error,) = errors(big)
    assert error["field"] == "graph" and error["message"].startswith(
        "a graph is at most 2097152 bytes of JSON"
    )


def test_10k_deep_nesting_is_refused_in_a_document_and_in_json_text() -> None:
    deep: Any = 0
    for _ in range(10_000):
        deep = [deep]
    assert errors(doc(description=deep)) == [{"field": "", "message": "JSON nested deeper than 32 levels"}]
    text = '{"name": "x", "graph": ' + "[" * 10_000 + "]" * 10_000 + "}"
    with pytest.raises(DeclarationError, match="JSON nested deeper than 32 levels"):
        load_declaration_json(text)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    document = doc(description="[[[[" * 20 + '\\"{{{{' * 20)
    assert load_declaration_json(json.dumps(document)).description == document["description"]


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(DeclarationError, match="not JSON"):
        load_declaration_json("{nope")
    assert errors([1, 2]) == [{"field": "", "message": "a declaration is a JSON object"}]
