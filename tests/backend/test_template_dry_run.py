"""The dry run of a template (backend/template_dry_run.py) over real loopback HTTP: the API on SQLite and
PostgreSQL, an instance emulator and a second, bare emulator as the sandbox (TEMPLATE_DRY_RUN_ADDRESS),
which the dry run loads with the instance's recorded `/object_info` before queueing the graph."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.models import Role
from backend.users import set_role
from tests.backend.test_templates import declaration
from tests.support.api import assert_error
from tests.support.backend import DEMO_TOKEN, Stack, start_stack
from tests.support.comfy import REAL_COMFYUI, EmulatorProcess, start_emulator
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
STUDIO_PACK = ROOT / "tests" / "data" / "object_info" / "studio-pack.json"

pytestmark = pytest.mark.skipif(bool(REAL_COMFYUI), reason="the sandbox is the emulator by design")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """A bare emulator (its own catalogue only) as the dry-run sandbox."""
    emu = start_emulator(tmp_path / "sandbox", step_ms=1)
    try:
        yield emu
    finally:
        emu.kill()


@contextlib.contextmanager
def lead_stack(db_url: str, tmp_path: Path, instance: str, dry_run_address: str) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, instance, template_dry_run_address=dry_run_address) as stack:
        asyncio.run(set_role(stack.settings, "alice", Role.lead))
        yield stack


def _validate(stack: Stack, doc: dict[str, Any]) -> dict[str, Any]:
    with stack.client(DEMO_TOKEN) as alice:
        r = alice.post("/api/templates/validate", json=doc)
    assert r.status_code == 200, r.text
    report: dict[str, Any] = r.json()
    return report


def _with_missing_image(doc: dict[str, Any], node: str = "20", save: str = "21") -> dict[str, Any]:
    """A second output whose LoadImage names a file the sandbox does not have: the instance checks pass
    (ComfyUI's LoadImage checks its file itself, at queue time), the sandbox refuses that node."""
    doc["graph"][node] = {"class_type": "LoadImage", "inputs": {"image": "not-uploaded.png"}}
    doc["graph"][save] = {"class_type": "SaveImage", "inputs": {"images": [node, 0], "filename_prefix": "x"}}
    return doc


def test_a_good_template_passes_its_dry_run_with_the_images_of_its_results(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess, sandbox: EmulatorProcess
) -> None:
    with lead_stack(db_url, tmp_path, emulator.url, sandbox.url) as stack:
        report = _validate(stack, declaration())
        assert report["ok"], report["problems"]
        dry = report["dry_run"]
        assert dry["status"] == "passed" and dry["node_errors"] == {}
        assert dry["message"] == f"rendered on the sandbox {sandbox.url}"
        [image] = dry["images"]["9"]
        assert image["type"] == "output" and image["filename"].endswith(".png")
        assert image["subfolder"].startswith("dry-run")
        view = httpx.get(f"{sandbox.url}/view", params=image, timeout=10)
        assert view.status_code == 200 and view.content.startswith(b"\x89PNG")
        assert not [w for w in report["warnings"] if w["code"].startswith("dry_run")]
        # publishing runs it again and stores the report it passed with
        with stack.client(DEMO_TOKEN) as alice:
            assert alice.post("/api/templates", json=declaration()).status_code == 201
            r = alice.post("/api/templates/plain-room/publish")
            assert r.status_code == 201, r.text
            assert r.json()["report"]["dry_run"]["status"] == "passed"


def test_an_image_input_gets_a_placeholder_upload_on_the_sandbox(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess, sandbox: EmulatorProcess
) -> None:
    doc = _with_missing_image(declaration("with-image"))
    doc["inputs"].append({"key": "photo", "label": "Photo", "kind": "image", "targets": [["20", "image"]]})
    doc["outputs"] = {"results": ["9"], "passes": [{"node": "21", "label": "The photo"}]}
    with lead_stack(db_url, tmp_path, emulator.url, sandbox.url) as stack:
        report = _validate(stack, doc)
        assert report["ok"], report["problems"]
        assert report["dry_run"]["status"] == "passed"
        assert set(report["dry_run"]["images"]) == {"9"}  # the results', not the passes'


def test_a_graph_the_sandbox_refuses_with_a_400_fails_naming_node_class_and_input(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess, sandbox: EmulatorProcess
) -> None:
    doc = declaration("refused")
    doc["graph"] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "not-uploaded.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    doc["inputs"], doc["outputs"] = [], {"results": ["2"]}
    with lead_stack(db_url, tmp_path, emulator.url, sandbox.url) as stack:
        report = _validate(stack, doc)
        assert not report["ok"]
        dry = report["dry_run"]
        assert dry["status"] == "failed" and set(dry["node_errors"]) == {"1"}
        assert dry["message"] == "The sandbox refused the graph: Prompt outputs failed validation"
        [problem] = report["problems"]
        assert problem == {
            "code": "dry_run_failed",
            "message": (
                "The dry run refused node 1 (LoadImage), input image: "
                "image - Invalid image file: not-uploaded.png."
            ),
            "field": "graph.1.inputs.image",
            "node_id": "1",
            "class_type": "LoadImage",
            "input": "image",
            "instance": sandbox.url,
        }
        with stack.client(DEMO_TOKEN) as alice:
            error = assert_error(alice.post("/api/templates", json=doc), 422, "template_invalid")
        assert error["details"] == [problem]


def test_a_200_with_node_errors_is_a_failure_naming_the_refused_node(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess, sandbox: EmulatorProcess
) -> None:
    """ComfyUI 0.3.64 queues the outputs that validate and lists the others' errors in a 200."""
    doc = _with_missing_image(declaration("half-good"))
    doc["outputs"] = {"results": ["9", "21"]}
    with lead_stack(db_url, tmp_path, emulator.url, sandbox.url) as stack:
        direct = httpx.post(f"{sandbox.url}/prompt", json={"prompt": doc["graph"]}, timeout=10)
        assert direct.status_code == 200 and set(direct.json()["node_errors"]) == {"20"}  # the premise
        report = _validate(stack, doc)
        assert not report["ok"]
        dry = report["dry_run"]
        assert dry["status"] == "failed" and set(dry["node_errors"]) == {"20"}
        assert dry["node_errors"]["20"]["dependent_outputs"] == ["21"]
        [problem] = report["problems"]
        assert (problem["code"], problem["node_id"], problem["class_type"], problem["input"]) == (
            "dry_run_failed",
            "20",
            "LoadImage",
            "image",
        )
        assert problem["message"] == (
            "The dry run refused node 20 (LoadImage), input image: "
            "image - Invalid image file: not-uploaded.png."
        )


def test_a_class_known_only_from_a_recorded_object_info_is_pushed_to_the_sandbox(
    db_url: str, tmp_path: Path, sandbox: EmulatorProcess
) -> None:
    instance = start_emulator(tmp_path / "instance", extra_args=["--object-info", str(STUDIO_PACK)])
    doc = declaration("pack-scale")
    doc["graph"]["20"] = {
        "class_type": "ImageScaleByPack",
        "inputs": {"image": ["8", 0], "upscale_method": "bilinear", "scale_by": 1.5},
    }
    doc["graph"]["9"]["inputs"]["images"] = ["20", 0]
    assert httpx.get(f"{sandbox.url}/object_info/ImageScaleByPack", timeout=10).json() == {}
    try:
        with lead_stack(db_url, tmp_path, instance.url, sandbox.url) as stack:
            report = _validate(stack, doc)
    finally:
        instance.kill()
    assert report["ok"], report["problems"]
    assert "ImageScaleByPack" in report["needs"]["nodes"]
    assert report["dry_run"]["status"] == "passed", report["dry_run"]
    assert report["dry_run"]["images"]["9"]
    known = httpx.get(f"{sandbox.url}/object_info/ImageScaleByPack", timeout=10).json()
    assert known["ImageScaleByPack"]["python_module"] == "custom_nodes.studio-pack"


def test_an_unreachable_sandbox_is_a_warning_and_publishing_goes_on(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    """The sandbox is the studio's, not the lead's to fix: when it does not answer, the report says so
    (warning `dry_run_unavailable`, dry run skipped) and the instance checks alone decide."""
    nowhere = f"127.0.0.1:{free_port()}"
    with lead_stack(db_url, tmp_path, emulator.url, nowhere) as stack:
        report = _validate(stack, declaration())
        assert report["ok"], report["problems"]
        assert report["dry_run"]["status"] == "skipped"
        [warning] = [w for w in report["warnings"] if w["code"].startswith("dry_run")]
        assert warning == {
            "code": "dry_run_unavailable",
            "message": (
                f"The sandbox at {nowhere} did not answer (ConnectError): no dry run was made, "
                "so only the instance checks vouch for this template."
            ),
            "field": None,
            "node_id": None,
            "class_type": None,
            "input": None,
            "instance": nowhere,
        }
        assert report["dry_run"]["message"] == warning["message"]
        with stack.client(DEMO_TOKEN) as alice:
            assert alice.post("/api/templates", json=declaration()).status_code == 201
            assert alice.post("/api/templates/plain-room/publish").status_code == 201
