"""check_graph: one test per failure, with its exact message; hostile graphs (size, depth, cycles)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from contract.templates import MAX_NODES, Problem, check_graph
from tests.contract.object_infos import CHECKPOINT, WORKFLOWS, core_object_info

OBJECT_INFO = core_object_info()


def text_graph() -> dict[str, Any]:
    graph = json.loads((WORKFLOWS / "txt2img.json").read_text())
    graph["4"]["inputs"]["ckpt_name"] = CHECKPOINT
    graph["10"]["inputs"]["lora_name"] = "indochine_v1.safetensors"
    return graph


def messages(graph: Any, object_info: Any = None, **kw: Any) -> list[str]:
    return [p.message for p in check_graph(graph, object_info, **kw)]


def chain(n: int) -> dict[str, Any]:
    graph: dict[str, Any] = {"1": {"class_type": "LoadImage", "inputs": {"image": "uploads/abc.png"}}}
    for i in range(2, n):
        graph[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    graph[str(n)] = {"class_type": "SaveImage", "inputs": {"images": [str(n - 1), 0], "filename_prefix": "x"}}
    return graph


def test_the_shipped_graphs_pass() -> None:
    assert check_graph(text_graph(), OBJECT_INFO) == []
    assert check_graph(text_graph()) == []


def test_a_ui_workflow_is_refused_with_how_to_export_the_api_format() -> None:
    ui = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [[1, 4, 0, 3, 0, "MODEL"]]}
    (problem,) = check_graph(ui)
    assert problem.code == "ui_format"
    assert "Workflow menu → Export (API)" in problem.message and "Dev mode options" in problem.message


@pytest.mark.parametrize("graph", [{}, [], "x", None])
def test_an_empty_or_non_object_graph(graph: Any) -> None:
    assert messages(graph) == ["a graph is a non-empty JSON object of nodes by id"]


def test_bad_nodes_are_named() -> None:
    graph = {
        "1": "nope",
        "2": {"inputs": {}},
        "3": {"class_type": "SaveImage", "inputs": []},
        4: {"class_type": "SaveImage", "inputs": {}},
    }
    assert messages(graph) == [
        "node 1: must be an object with class_type and inputs",
        "node 2: class_type must be a non-empty string",
        "node 3 (SaveImage): inputs must be an object of input names",
        "node id 4 must be a string of 1 to 64 characters",
    ]


def test_a_malformed_link() -> None:
    graph = text_graph()
    graph["3"]["inputs"]["model"] = ["10", 0, 1]
    graph["8"]["inputs"]["vae"] = ["4", "2"]
    assert messages(graph) == [
        "node 3 (KSampler), input model: a link is [node_id, output_index] (a string and a whole number), "
        "not ['10', 0, 1]",
        "node 8 (VAEDecode), input vae: a link is [node_id, output_index] (a string and a whole number), "
        "not ['4', '2']",
    ]


def test_a_link_to_a_missing_node() -> None:
    graph = text_graph()
    graph["3"]["inputs"]["latent_image"] = ["55", 0]
    (problem,) = check_graph(graph)
    assert problem == Problem(
        "link_to_missing_node",
        "node 3 (KSampler), input latent_image: links to node 55, which is not in the graph",
        "3",
        "KSampler",
        "latent_image",
    )
    assert problem.path == "graph.3.inputs.latent_image"


def test_a_link_to_a_missing_output() -> None:
    graph = text_graph()
    graph["8"]["inputs"]["vae"] = ["4", 3]
    assert messages(graph, OBJECT_INFO) == [
        "node 8 (VAEDecode), input vae: links to output 3 of node 4 (CheckpointLoaderSimple), which "
        "has 3 output(s)"
    ]


def test_a_link_of_the_wrong_type() -> None:
    graph = text_graph()
    graph["8"]["inputs"]["vae"] = ["4", 1]
    assert messages(graph, OBJECT_INFO) == [
        "node 8 (VAEDecode), input vae: expects VAE but node 4 (CheckpointLoaderSimple) output 1 gives CLIP"
    ]


def test_a_two_node_cycle() -> None:
    graph = text_graph()
    graph["4"] = {"class_type": "ImageInvert", "inputs": {"image": ["8", 0]}}
    (problem,) = check_graph(graph)
    assert problem.code == "cycle"
    assert problem.message == (
        "node 3 (KSampler): is on a cycle: 3 → 8 → 4 → 10 → 6 → 3 "
        "(a graph must run in order, each node after its inputs)"
    )


def test_a_self_link_is_a_cycle() -> None:
    graph = chain(5)
    graph["3"]["inputs"]["image"] = ["3", 0]
    assert messages(graph) == [
        "node 3 (ImageInvert): is on a cycle: 3 → 3 (a graph must run in order, each node after its inputs)"
    ]


def test_a_1000_node_chain_and_a_1000_node_cycle_do_not_exhaust_the_stack() -> None:
    assert check_graph(chain(MAX_NODES), OBJECT_INFO) == []
    looped = chain(MAX_NODES)
    looped["2"]["inputs"]["image"] = [str(MAX_NODES - 1), 0]
    (problem,) = check_graph(looped)
    assert problem.code == "cycle" and problem.node_id == "2" and problem.message.count("→") == MAX_NODES - 2


def test_1001_nodes_are_refused() -> None:
    assert messages(chain(MAX_NODES + 1)) == ["a graph has at most 1000 nodes (this one has 1001)"]


def test_a_graph_over_2_mib_is_refused() -> None:
    graph = chain(3)
    graph["3"]["inputs"]["filename_prefix"] = "x" * (2 * 1024 * 1024)
    (problem,) = check_graph(graph)
    assert problem.code == "graph_too_large"
    assert problem.message.startswith("a graph is at most 2097152 bytes of JSON (this one is 2097")


def test_a_10k_deep_nesting_is_refused_without_recursion() -> None:
    deep: Any = 0
    for _ in range(10_000):
        deep = {"__value__": [deep]}
    graph = chain(3)
    graph["3"]["inputs"]["filename_prefix"] = deep
    assert messages(graph) == ["the graph's JSON is nested deeper than 32 levels"]


def test_no_output_node() -> None:
    graph = text_graph()
    del graph["9"]
    assert messages(graph) == [
        "the graph has no output node (a SaveImage, PreviewImage or another class marked OUTPUT_NODE)"
    ]


def test_a_class_object_info_marks_output_node_counts() -> None:
    graph = text_graph()
    graph["9"] = {"class_type": "PreviewAnyPack", "inputs": {"source": ["8", 0]}}
    assert check_graph(graph, OBJECT_INFO) == []
    assert [p.code for p in check_graph(graph)] == ["no_output_node"]


def test_an_unknown_class_names_the_instance() -> None:
    graph = text_graph()
    graph["8"]["class_type"] = "VAEDecodeTiled"
    (problem,) = check_graph(graph, OBJECT_INFO, instance="gpu-1:8188")
    assert problem.message == "node 8 (VAEDecodeTiled): class VAEDecodeTiled is not installed (on gpu-1:8188)"
    assert (problem.instance, problem.class_type) == ("gpu-1:8188", "VAEDecodeTiled")


def test_a_required_input_missing() -> None:
    graph = text_graph()
    del graph["3"]["inputs"]["cfg"]
    assert messages(graph, OBJECT_INFO) == ["node 3 (KSampler), input cfg: required input is missing"]


@pytest.mark.parametrize(
    ("node", "name", "value", "message"),
    [
        ("3", "steps", 0, "node 3 (KSampler), input steps: Value 0 smaller than min of 1 (value 0)"),
        (
            "3",
            "cfg",
            101.0,
            "node 3 (KSampler), input cfg: Value 101.0 bigger than max of 100.0 (value 101.0)",
        ),
        ("3", "steps", "many", "node 3 (KSampler), input steps: expects a number (INT), not 'many'"),
        ("3", "steps", True, "node 3 (KSampler), input steps: expects a number (INT), not True"),
        (
            "3",
            "scheduler",
            "fast",
            "node 3 (KSampler), input scheduler: value 'fast' is not one of: simple, "
            "sgm_uniform, karras, exponential, ddim_uniform, beta, normal, linear_quadratic, kl_optimal",
        ),
        (
            "4",
            "ckpt_name",
            "missing.safetensors",
            "node 4 (CheckpointLoaderSimple), input ckpt_name: value "
            "'missing.safetensors' is not one of: interiordesignsuperm_v2.safetensors, other.safetensors",
        ),
        (
            "3",
            "model",
            "a model",
            "node 3 (KSampler), input model: expects a link from a MODEL output, not the value 'a model'",
        ),
    ],
)
def test_literals_are_judged_by_the_spec(node: str, name: str, value: Any, message: str) -> None:
    graph = text_graph()
    graph[node]["inputs"][name] = value
    assert messages(graph, OBJECT_INFO) == [message]


def test_a_filled_literal_is_left_to_the_inputs_checks() -> None:
    graph = text_graph()
    graph["3"]["inputs"]["steps"] = 0
    assert check_graph(graph, OBJECT_INFO, filled=[("3", "steps")]) == []


def test_markup_in_a_class_name_is_kept_as_text() -> None:
    graph = text_graph()
    graph["8"]["class_type"] = "<script>alert(1)</script>"
    assert messages(graph, OBJECT_INFO) == [
        "node 8 (<script>alert(1)</script>): class <script>alert(1)</script> is not installed"
    ]


def test_check_graph_does_not_change_the_graph() -> None:
    graph = text_graph()
    before = copy.deepcopy(graph)
    check_graph(graph, OBJECT_INFO)
    assert graph == before


def test_problems_serialise_with_their_field_path() -> None:
    graph = text_graph()
    del graph["3"]["inputs"]["cfg"]
    (problem,) = check_graph(graph, OBJECT_INFO)
    assert problem.to_json() == {
        "code": "required_input_missing",
        "message": "node 3 (KSampler), input cfg: required input is missing",
        "node_id": "3",
        "class_type": "KSampler",
        "input": "cfg",
        "instance": None,
        "field": "graph.3.inputs.cfg",
    }
