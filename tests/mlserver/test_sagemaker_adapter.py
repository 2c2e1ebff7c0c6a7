"""The SageMaker adapter as a real uvicorn process in front of a ComfyUI process: readiness, both workflows,
rejections, execution errors, idempotency, timeouts, the SIGTERM drain, a dead ComfyUI (mlserver/sagemaker/).

With COMFYUI_URL set the ComfyUI-generic tests run against that server; the emulator's controls (faults,
stats, kill) are needed by the `emulator_only` ones, skipped then."""

from __future__ import annotations

import base64
import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from backend.config import Settings
from contract.graphs import WORKFLOWS_DIR, GraphInputs, build_graph
from contract.styles import load_manifest
from mlserver.sagemaker.__main__ import parse_args
from mlserver.sagemaker.adapter import warmup_graph
from mlserver.sagemaker.payload import PNG_SIGNATURE
from tests.factories import sketch_png
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator
from tests.support.net import free_port, wait_until
from tests.support.sagemaker_adapter import AdapterProcess, start_adapter

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

MANIFEST = load_manifest()
DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
INVOKE_TIMEOUT_S = 60.0
SLOW_STEPS = 1000  # at the emulator's 2 ms a step (512x512): a render of about 2 s


def params(**overrides: Any) -> dict[str, Any]:
    p = {
        "kind": "text",
        "prompt": f"sunlit living room {uuid.uuid4().hex[:8]}",  # unique: ComfyUI's cache never short-cuts
        "negative_prompt": "clutter",
        "style": "indochine",
        "width": 512,
        "height": 384,
        "steps": 3,
        "cfg": 6.5,
        "sampler": "euler",
        "scheduler": "normal",
        "num_images": 2,
        "lora_strength": None,
        "sketch_strength": 0.7,
    }
    p.update(overrides)
    return p


def job_graph(
    job_id: str, kind: str = "text", sketch_name: str | None = None, **overrides: Any
) -> dict[str, Any]:
    inputs = GraphInputs(kind, params(kind=kind, **overrides), 42, job_id, sketch_name)
    return build_graph(
        inputs,
        MANIFEST,
        WORKFLOWS_DIR,
        checkpoint=DEFAULTS.checkpoint_name,
        controlnet=DEFAULTS.controlnet_name,
    )


def text_payload(**overrides: Any) -> dict[str, Any]:
    job_id = str(uuid.uuid4())
    return {"job_id": job_id, "graph": job_graph(job_id, **overrides), "extra_data": {}, "sketch": None}


def sketch_payload(png: bytes | None = None, **overrides: Any) -> dict[str, Any]:
    png = png or sketch_png(320, 240)
    filename = f"{hashlib.sha256(png).hexdigest()}.png"
    job_id = str(uuid.uuid4())
    sketch = {"subfolder": "sketches", "filename": filename, "png_base64": base64.b64encode(png).decode()}
    graph = job_graph(job_id, "sketch", f"sketches/{filename}", **overrides)
    return {"job_id": job_id, "graph": graph, "sketch": sketch}


def invoke(adapter: AdapterProcess, payload: Any, **kwargs: Any) -> httpx.Response:
    if isinstance(payload, bytes):
        return httpx.post(f"{adapter.url}/invocations", content=payload, timeout=INVOKE_TIMEOUT_S, **kwargs)
    return httpx.post(f"{adapter.url}/invocations", json=payload, timeout=INVOKE_TIMEOUT_S, **kwargs)


def ping(adapter: AdapterProcess) -> httpx.Response:
    return httpx.get(f"{adapter.url}/ping", timeout=10)


def error_of(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def decode_images(body: dict[str, Any], size: tuple[int, int], count: int) -> list[bytes]:
    assert [i["index"] for i in body["images"]] == list(range(count))
    data = [base64.b64decode(i["png_base64"]) for i in body["images"]]
    for png in data:
        assert png.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and img.size == size
    return data


def running(emulator: EmulatorProcess, job_id: str) -> bool:
    return bool(emulator.stats()["executions"].get(job_id, 0) >= 1)


@pytest.fixture(scope="module")
def adapter(comfyui_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdapterProcess]:
    """One adapter for the module, in front of the session's ComfyUI."""
    proc = start_adapter(tmp_path_factory.mktemp("adapter"), comfyui_url)
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def own_adapter(emulator: EmulatorProcess, tmp_path: Path) -> Iterator[AdapterProcess]:
    """An adapter of this test's own, in front of this test's own emulator (faults, kills, SIGTERM)."""
    proc = start_adapter(tmp_path / "adapter", emulator.url, extra_env={"INVOCATION_TIMEOUT_S": "30"})
    try:
        yield proc
    finally:
        proc.kill()


# --- readiness --------------------------------------------------------------------------------------------


def test_ping_is_200_with_the_comfyui_version_once_ready(adapter: AdapterProcess) -> None:
    r = ping(adapter)
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["comfyui_version"]


@pytest.mark.emulator_only
def test_ping_is_503_until_comfyui_is_up_and_the_warm_up_has_run(tmp_path: Path) -> None:
    if REAL_COMFYUI:
        pytest.skip(NEEDS_EMULATOR)
    port = free_port()
    proc = start_adapter(tmp_path / "adapter", f"http://127.0.0.1:{port}", wait=False)
    emu = None
    try:
        wait_until(lambda: _reachable(proc), 20, what="the adapter to listen")
        r = ping(proc)
        assert r.status_code == 503 and r.json()["reason"] == "ComfyUI not up"
        # A slow first checkpoint load: ComfyUI answers, but the warm-up render is still running.
        emu = start_emulator(tmp_path / "comfyui", port=port, extra_args=["--checkpoint-load-ms", "3000"])
        wait_until(lambda: ping(proc).json()["reason"] != "ComfyUI not up", 15, what="ComfyUI seen")
        r = ping(proc)
        assert r.status_code == 503 and r.json()["reason"] == "warming up"
        proc.wait_ready()
        stats = emu.stats()
        # the warm-up loaded the checkpoint and ran one tiny 1-step render
        assert stats["checkpoint_loads"] == 1 and stats["total_steps"] == 1
        assert [run["status"] for run in stats["runs"]] == ["execution_success"]
    finally:
        proc.kill()
        if emu is not None:
            emu.kill()


def _reachable(proc: AdapterProcess) -> bool:
    try:
        ping(proc)
    except httpx.HTTPError:
        return False
    return True


@pytest.mark.emulator_only
def test_warmup_off_makes_ping_200_as_soon_as_comfyui_answers(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    proc = start_adapter(tmp_path / "adapter", emulator.url, extra_env={"WARMUP": "off"})
    try:
        assert ping(proc).status_code == 200
        assert emulator.stats()["runs"] == []
    finally:
        proc.kill()


# --- successful jobs --------------------------------------------------------------------------------------


def test_text_job_answers_its_pngs_in_order_with_timings(adapter: AdapterProcess) -> None:
    payload = text_payload(width=512, height=384, num_images=2)
    r = invoke(adapter, payload)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["job_id"] == body["prompt_id"] == payload["job_id"]
    decode_images(body, (512, 384), 2)
    assert [i["subfolder"] for i in body["images"]] == ["renders", "renders"]
    assert all(i["filename"].startswith(payload["job_id"]) for i in body["images"])
    assert isinstance(body["timings"]["queue_s"], float) and body["timings"]["render_s"] > 0
    assert body["comfyui_version"]


def test_sketch_job_uploads_the_sketch_and_renders_from_it(adapter: AdapterProcess, comfyui_url: str) -> None:
    png = sketch_png(320, 240)
    payload = sketch_payload(png, width=384, height=256, num_images=1)
    r = invoke(adapter, payload)
    assert r.status_code == 200, r.text
    decode_images(r.json(), (384, 256), 1)
    stored = httpx.get(
        f"{comfyui_url}/view",
        params={"filename": payload["sketch"]["filename"], "subfolder": "sketches", "type": "input"},
    )
    assert stored.status_code == 200 and stored.content == png


def test_images_are_placed_under_their_exact_names_and_the_graph_runs_unchanged(
    adapter: AdapterProcess, comfyui_url: str
) -> None:
    png = sketch_png(330, 250)
    legacy = sketch_payload(png, width=256, height=256, num_images=1)
    payload = {**legacy, "images": [legacy.pop("sketch")]}  # the request's form since templates
    del payload["sketch"]
    name = payload["images"][0]["filename"]
    # Other bytes already under that content name (a partial copy...): overwritten, the path stays right.
    other = sketch_png(200, 200, dark_on_light=False)
    httpx.post(
        f"{comfyui_url}/upload/image",
        files={"image": (name, other, "image/png")},
        data={"subfolder": "sketches", "type": "input"},
    ).raise_for_status()
    r = invoke(adapter, payload)
    assert r.status_code == 200, r.text
    assert [i["node_id"] for i in r.json()["images"]] == ["9"]
    history = httpx.get(f"{comfyui_url}/history/{payload['job_id']}").json()[payload["job_id"]]
    assert history["prompt"][2] == payload["graph"]
    stored = httpx.get(
        f"{comfyui_url}/view", params={"filename": name, "subfolder": "sketches", "type": "input"}
    )
    assert stored.content == png


def test_reinvoking_a_finished_job_returns_the_same_images_without_running_again(
    adapter: AdapterProcess, comfyui_url: str
) -> None:
    payload = text_payload(num_images=2)
    first = invoke(adapter, payload)
    second = invoke(adapter, payload)
    assert first.status_code == second.status_code == 200
    assert second.json()["images"] == first.json()["images"]
    assert second.json()["timings"]["queue_s"] == 0.0
    if not REAL_COMFYUI:
        stats = httpx.get(f"{comfyui_url}/emulator/stats").json()
        assert stats["executions"][payload["job_id"]] == 1


@pytest.mark.emulator_only
def test_a_job_already_in_comfyui_is_followed_not_resubmitted(
    emulator: EmulatorProcess, own_adapter: AdapterProcess
) -> None:
    payload = text_payload(width=512, height=512, num_images=1, steps=SLOW_STEPS)
    # As if an earlier adapter process had submitted it and then died.
    httpx.post(
        f"{emulator.url}/prompt",
        json={"prompt": payload["graph"], "prompt_id": payload["job_id"], "client_id": "gone"},
    ).raise_for_status()
    r = invoke(own_adapter, payload)
    assert r.status_code == 200, r.text
    decode_images(r.json(), (512, 512), 1)
    assert emulator.stats()["executions"][payload["job_id"]] == 1


# --- failures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "node", "error_type"),
    [
        ({"sampler": "euler_a"}, "3", "value_not_in_list"),
        ({"steps": 0}, "3", "value_smaller_than_min"),
    ],
)
def test_a_graph_comfyui_rejects_is_a_422_with_its_node_errors(
    adapter: AdapterProcess, overrides: dict[str, Any], node: str, error_type: str
) -> None:
    error = error_of(invoke(adapter, text_payload(**overrides)), 422, "comfy_rejected")
    assert error["node_errors"][node]["class_type"] == "KSampler"
    assert error_type in {e["type"] for e in error["node_errors"][node]["errors"]}
    assert error["comfy_error"]["type"] == "prompt_outputs_failed_validation"


def test_an_unknown_node_class_is_rejected_without_node_errors(adapter: AdapterProcess) -> None:
    payload = text_payload()
    payload["graph"]["8"]["class_type"] = "NoSuchNode"
    error = error_of(invoke(adapter, payload), 422, "comfy_rejected")
    assert error["node_errors"] == {} and error["comfy_error"]["type"] == "invalid_prompt"


def _bad_payloads() -> list[tuple[str, Any, str]]:
    ok = text_payload()
    not_png = base64.b64encode(b"GIF89a...").decode()
    return [
        ("not JSON", b"{nope", "body"),
        ("a list", b"[]", "body"),
        ("no job_id", {k: v for k, v in ok.items() if k != "job_id"}, "job_id"),
        ("path in job_id", {**ok, "job_id": "../etc"}, "job_id"),
        ("empty graph", {**ok, "graph": {}}, "graph"),
        ("node without class_type", {**ok, "graph": {"1": {"inputs": {}}}}, "graph"),
        ("unknown field", {**ok, "priority": 1}, "priority"),
        (
            "sketch not base64",
            {**ok, "sketch": {"subfolder": "sketches", "filename": "a.png", "png_base64": "***"}},
            "sketch.png_base64",
        ),
        (
            "sketch not a PNG",
            {**ok, "sketch": {"subfolder": "sketches", "filename": "a.png", "png_base64": not_png}},
            "sketch.png_base64",
        ),
        (
            "an image not a PNG",
            {**ok, "images": [{"subfolder": "uploads", "filename": "a.png", "png_base64": not_png}]},
            "images.0.png_base64",
        ),
        (
            "an image path escaping the input folder",
            {**ok, "images": [{"subfolder": "../x", "filename": "a.png", "png_base64": not_png}]},
            "images.0.subfolder",
        ),
        (
            "sketch escaping the input folder",
            {**ok, "sketch": {"subfolder": "../x", "filename": "a.png", "png_base64": not_png}},
            "sketch.subfolder",
        ),
    ]


@pytest.mark.parametrize(("why", "payload", "field"), _bad_payloads(), ids=[b[0] for b in _bad_payloads()])
def test_a_bad_payload_is_a_400_naming_the_field(
    adapter: AdapterProcess, why: str, payload: Any, field: str
) -> None:
    error = error_of(invoke(adapter, payload), 400, "invalid_payload")
    assert field in {d["field"] for d in error["details"]}, error


@pytest.mark.emulator_only
@pytest.mark.parametrize(
    ("fault", "code", "exception_type"),
    [
        ({"fail_next": 1}, "comfy_execution_error", "RuntimeError"),
        ({"oom_next": 1}, "comfy_out_of_memory", "torch.OutOfMemoryError"),
    ],
)
def test_an_execution_error_is_a_500_naming_the_node_and_a_retry_runs_again(
    emulator: EmulatorProcess,
    own_adapter: AdapterProcess,
    fault: dict[str, int],
    code: str,
    exception_type: str,
) -> None:
    emulator.set_faults(**fault)
    payload = text_payload(num_images=1)
    error = error_of(invoke(own_adapter, payload), 500, code)
    assert error["node_id"] == "3" and error["node_type"] == "KSampler"
    assert error["exception_type"] == exception_type and error["exception_message"]
    # The same job sent again (SageMaker or the backend retrying) runs again, and succeeds.
    r = invoke(own_adapter, payload)
    assert r.status_code == 200, r.text
    decode_images(r.json(), (512, 384), 1)
    assert emulator.stats()["executions"][payload["job_id"]] == 2


@pytest.mark.emulator_only
def test_a_render_past_the_invocation_timeout_is_interrupted_and_a_504(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    proc = start_adapter(tmp_path / "adapter", emulator.url, extra_env={"INVOCATION_TIMEOUT_S": "0.5"})
    try:
        payload = text_payload(width=512, height=512, num_images=1, steps=SLOW_STEPS * 5)
        error_of(invoke(proc, payload), 504, "timeout")
        # The 504 did not wait for the render: ComfyUI's run of it ended interrupted, not finished. (A
        # wall-clock bound here measured the machine's load: 11 s once beside CI's other workers.)
        stats = emulator.stats()
        assert stats["runs"][-1]["prompt_id"] == payload["job_id"]
        assert stats["runs"][-1]["status"] == "execution_interrupted"
        assert stats["queue_remaining"] == 0
    finally:
        proc.kill()


@pytest.mark.emulator_only
def test_comfyui_killed_makes_ping_and_invocations_503(
    emulator: EmulatorProcess, own_adapter: AdapterProcess
) -> None:
    emulator.kill()
    r = ping(own_adapter)
    assert r.status_code == 503 and r.json()["reason"] == "ComfyUI not up"
    error_of(invoke(own_adapter, text_payload()), 503, "comfy_unavailable")


@pytest.mark.emulator_only
def test_comfyui_dying_mid_render_is_a_503(emulator: EmulatorProcess, own_adapter: AdapterProcess) -> None:
    payload = text_payload(width=512, height=512, num_images=1, steps=SLOW_STEPS * 5)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(invoke, own_adapter, payload)
        wait_until(lambda: running(emulator, payload["job_id"]), 10, what="the render to start")
        busy = ping(own_adapter)
        assert busy.status_code == 200 and busy.json()["busy"] is True
        emulator.kill()
        error_of(future.result(timeout=INVOKE_TIMEOUT_S), 503, "comfy_unavailable")
    assert ping(own_adapter).json()["reason"] == "ComfyUI not up"


# --- SIGTERM ----------------------------------------------------------------------------------------------


def _start_slow_job(
    pool: ThreadPoolExecutor, emulator: EmulatorProcess, proc: AdapterProcess, steps: int
) -> tuple[dict[str, Any], Future[httpx.Response]]:
    payload = text_payload(width=512, height=512, num_images=1, steps=steps)
    future = pool.submit(invoke, proc, payload)
    wait_until(lambda: running(emulator, payload["job_id"]), 10, what="the render to start")
    return payload, future


@pytest.mark.emulator_only
def test_sigterm_lets_the_current_render_finish_refuses_new_work_and_exits_0(
    emulator: EmulatorProcess, own_adapter: AdapterProcess
) -> None:
    with ThreadPoolExecutor(1) as pool:
        payload, future = _start_slow_job(pool, emulator, own_adapter, SLOW_STEPS)
        started = time.monotonic()
        own_adapter.terminate()
        wait_until(lambda: ping(own_adapter).status_code == 503, 5, what="/ping to say draining")
        assert ping(own_adapter).json()["reason"] == "draining"
        error_of(invoke(own_adapter, text_payload()), 503, "draining")
        r = future.result(timeout=INVOKE_TIMEOUT_S)
    assert r.status_code == 200, r.text
    decode_images(r.json(), (512, 512), 1)
    assert own_adapter.wait(timeout_s=40) == 0
    assert time.monotonic() - started < 30
    run = emulator.stats()["runs"][-1]
    assert run["prompt_id"] == payload["job_id"] and run["status"] == "execution_success"


@pytest.mark.emulator_only
def test_sigterm_interrupts_a_render_that_outlasts_the_grace(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    proc = start_adapter(tmp_path / "adapter", emulator.url, extra_env={"DRAIN_GRACE_S": "2"})
    try:
        with ThreadPoolExecutor(1) as pool:
            payload, future = _start_slow_job(pool, emulator, proc, SLOW_STEPS * 10)  # about 20 s
            started = time.monotonic()
            proc.terminate()
            error_of(future.result(timeout=INVOKE_TIMEOUT_S), 503, "draining")
        assert proc.wait(timeout_s=15) == 0
        assert time.monotonic() - started < 10
        run = emulator.stats()["runs"][-1]
        assert run["prompt_id"] == payload["job_id"] and run["status"] == "execution_interrupted"
    finally:
        proc.kill()


@pytest.mark.emulator_only
def test_sigterm_when_idle_exits_0_at_once(own_adapter: AdapterProcess) -> None:
    started = time.monotonic()
    assert own_adapter.stop(timeout_s=10) == 0
    assert time.monotonic() - started < 5


# --- settings and the warm-up graph (no process) ------------------------------------------------------------


def test_flags_override_the_environment_which_overrides_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFY_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("WARMUP", "off")
    monkeypatch.setenv("INVOCATION_TIMEOUT_S", "12.5")
    settings = parse_args(["--port", "8123"])
    assert (settings.comfy_url, settings.adapter_port, settings.warmup) == (
        "http://127.0.0.1:9999",
        8123,
        False,
    )
    assert settings.invocation_timeout_s == 12.5 and settings.drain_grace_s == 30.0
    assert parse_args(["--comfy-url", "http://10.0.0.1:8188", "--warmup", "on"]).warmup is True
    assert parse_args(["--comfy-url", "http://10.0.0.1:8188"]).comfy_url == "http://10.0.0.1:8188"


def test_the_warm_up_graph_is_txt2img_cut_down_to_a_1_step_64px_preview() -> None:
    graph = warmup_graph()
    assert "10" not in graph  # no LoRA: nothing but the checkpoint needs to be there
    assert graph["3"]["inputs"]["model"] == ["4", 0] and graph["6"]["inputs"]["clip"] == ["4", 1]
    assert graph["5"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}
    assert graph["3"]["inputs"]["steps"] == 1
    assert graph["9"] == {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    assert warmup_graph("other.safetensors")["4"]["inputs"]["ckpt_name"] == "other.safetensors"


def test_an_unknown_route_answers_the_error_shape(adapter: AdapterProcess) -> None:
    error_of(httpx.get(f"{adapter.url}/nope"), 404, "not_found")
    error_of(httpx.get(f"{adapter.url}/invocations"), 405, "method_not_allowed")
