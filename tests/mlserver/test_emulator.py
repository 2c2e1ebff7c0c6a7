"""The emulator's own behaviour: restart semantics, timing costs, fault injection, deterministic images."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mlserver.emulator.images import RenderSpec, render
from mlserver.emulator.nodes import CATALOGUE, SAMPLERS, SCHEDULERS
from mlserver.emulator.weights import check_safetensors
from tests.mlserver.comfy_client import Comfy, graph
from tests.support.comfy import (
    CPU_WORKLOAD,
    FAST_WORKLOAD,
    EmulatorProcess,
    read_workload,
    start_emulator,
    workload_of,
    write_weights,
)

SAFETENSOR_ERROR = "safetensors._safetensors_rust.SafetensorError"


def test_restart_loses_queue_history_and_counter(emulator: EmulatorProcess) -> None:
    comfy = Comfy(emulator.url)
    pid, _ = comfy.run(graph())
    assert comfy.history(pid)
    emulator.restart()
    comfy = Comfy(emulator.url)
    assert comfy.http.get("/history").json() == {}
    assert comfy.http.get("/queue").json() == {"queue_running": [], "queue_pending": []}
    assert comfy.post(graph()).json()["number"] == 0


def test_crash_after_steps_kills_the_process_mid_job(emulator: EmulatorProcess) -> None:
    emulator.set_faults(crash_after_steps=2)
    comfy = Comfy(emulator.url)
    comfy.post(graph(**{"3.steps": 10}))
    deadline = time.monotonic() + 10
    while emulator.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not emulator.alive


def test_fail_next_gives_an_execution_error_and_stats_count_runs(emulator: EmulatorProcess) -> None:
    emulator.set_faults(fail_next=1)
    comfy = Comfy(emulator.url)
    pid, messages = comfy.run(graph())
    error = next(m for m in messages if m["type"] == "execution_error")["data"]
    assert error["node_type"] == "KSampler" and error["exception_type"] == "RuntimeError"
    stats = emulator.stats()
    assert stats["executions"][pid] == 1 and stats["completed"][pid] == 1
    assert stats["runs"][-1]["status"] == "execution_error"
    assert httpx.post(f"{emulator.url}/emulator/faults", json={"nope": 1}).status_code == 400


def test_oom_variant_has_torchs_type_and_the_tips(emulator: EmulatorProcess) -> None:
    emulator.set_faults(oom_next=1)
    _, messages = Comfy(emulator.url).run(graph())
    error = next(m for m in messages if m["type"] == "execution_error")["data"]
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert "CUDA out of memory" in error["exception_message"] and "TIPS:" in error["exception_message"]


def test_view_fail_next_and_drop_ws(tmp_path) -> None:
    emu = start_emulator(tmp_path / "e", extra_args=["--drop-ws-after", "3"])
    try:
        comfy = Comfy(emu.url)
        with comfy.ws() as ws:
            ws.recv(timeout=5)
            comfy.post(graph())
            with pytest.raises(Exception):  # noqa: B017 - the socket is closed by the server
                for _ in range(50):
                    ws.recv(timeout=5)
        emu.set_faults(view_fail_next=1)
        time.sleep(0.5)
        image = next(iter(comfy.http.get("/history").json().values()))["outputs"]["9"]["images"][0]
        params = {"filename": image["filename"], "subfolder": image["subfolder"]}
        assert comfy.http.get("/view", params=params).status_code == 500
        assert comfy.http.get("/view", params=params).status_code == 200
    finally:
        emu.kill()


def test_slow_start_opens_the_port_late(tmp_path) -> None:
    t0 = time.monotonic()
    emu = start_emulator(tmp_path / "e", extra_args=["--slow-start-s", "1.0"])
    try:
        assert time.monotonic() - t0 >= 1.0
    finally:
        emu.kill()


def test_lora_and_checkpoint_loads_are_counted_and_cost_time(tmp_path) -> None:
    emu = start_emulator(tmp_path / "e", extra_args=["--lora-load-ms", "200"])
    try:
        comfy = Comfy(emu.url)
        t0 = time.monotonic()
        comfy.run(graph())
        first = time.monotonic() - t0
        comfy.run(graph())  # same LoRA: no reload
        comfy.run(graph(**{"10.lora_name": "minimalist_v1.safetensors"}))
        stats = emu.stats()
        assert stats["lora_loads"] == 2 and stats["checkpoint_loads"] == 1
        assert first >= 0.2
    finally:
        emu.kill()


def test_step_time_is_the_setting(tmp_path) -> None:
    emu = start_emulator(tmp_path / "e", step_ms=50)
    try:
        pid, _ = Comfy(emu.url).run(graph(**{"3.steps": 10, "5.width": 512, "5.height": 512}))
        run = emu.stats()["runs"][-1]
        assert run["prompt_id"] == pid
        assert 0.5 <= run["ended_at"] - run["started_at"] < 2.0
    finally:
        emu.kill()


def test_renders_are_deterministic_and_differ_by_seed() -> None:
    spec = RenderSpec(320, 200, 7, "a calm bedroom", ("minimalist_v1.safetensors",), "ckpt.safetensors")
    a, b = render(spec, 0), render(spec, 0)
    assert a.tobytes() == b.tobytes() and a.size == (320, 200)
    c = render(RenderSpec(320, 200, 8, "a calm bedroom", (), "ckpt.safetensors"), 0)
    assert a.tobytes() != c.tobytes()
    sketch = Image.new("L", (100, 100), 0)
    sketch.paste(255, (10, 10, 90, 20))
    with_sketch = render(RenderSpec(320, 200, 7, "x", (), "c", control=sketch, control_strength=1.0), 0)
    assert with_sketch.tobytes() != render(RenderSpec(320, 200, 7, "x", (), "c"), 0).tobytes()
    out = io.BytesIO()
    with_sketch.save(out, "PNG")
    assert out.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_catalogue_has_comfyuis_sampler_and_scheduler_lists() -> None:
    assert len(SAMPLERS) == 42 and SAMPLERS[-1] == "uni_pc_bh2"
    assert SCHEDULERS == [
        "simple",
        "sgm_uniform",
        "karras",
        "exponential",
        "ddim_uniform",
        "beta",
        "normal",
        "linear_quadratic",
        "kl_optimal",
    ]
    assert CATALOGUE["KSampler"].input_specs()["steps"] == (
        "INT",
        {
            "default": 20,
            "min": 1,
            "max": 10000,
            "tooltip": "The number of steps used in the denoising process.",
        },
    )
    assert CATALOGUE["ControlNetApplyAdvanced"].output_names == ("positive", "negative")


# (graph, node, models folder, file, its bytes, the error after "Error while deserializing header: ")
BROKEN_MODELS = [
    ("txt2img", "10", "loras", "indochine_v1.safetensors", b"", "header too small"),
    ("txt2img", "4", "checkpoints", "interiordesignsuperm_v2.safetensors", b"PK\x03\x04" + bytes(60),
     "invalid header length"),
    ("sketch2img", "14", "controlnet", "control_v11p_sd15_scribble.safetensors", b"cut",
     "incomplete metadata, file not fully covered"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "node", "folder", "filename", "data", "error"), BROKEN_MODELS)
def test_an_empty_or_corrupt_model_file_fails_the_prompt_at_load_as_comfyui(
    emulator: EmulatorProcess, name: str, node: str, folder: str, filename: str, data: bytes, error: str
) -> None:
    path = emulator.base_dir / "models" / folder / filename
    if data == b"cut":  # a download that stopped inside the tensors
        data = write_weights(path, bytes(64)).read_bytes()[:-10]
    path.write_bytes(data)
    Image.new("RGB", (64, 48), "white").save(emulator.base_dir / "input" / "room.png")
    comfy = Comfy(emulator.url)
    pid, messages = comfy.run(graph(name, **{"11.image": "room.png"} if name == "sketch2img" else {}))
    failed = next(m for m in messages if m["type"] == "execution_error")["data"]
    assert (failed["node_id"], failed["node_type"]) == (
        node,
        comfy.history(pid)["prompt"][2][node]["class_type"],
    )
    assert failed["exception_type"] == SAFETENSOR_ERROR
    assert failed["exception_message"] == f"Error while deserializing header: {error}\n"
    assert {"traceback", "current_inputs", "current_outputs", "executed", "timestamp"} <= set(failed)
    kinds = [m["type"] for m in messages if m["type"] not in ("status", "progress_state")]
    assert kinds[-2:] == ["execution_error", "executing"] and "execution_success" not in kinds
    assert "progress" not in kinds and "executed" not in kinds
    status = comfy.history(pid)["status"]
    assert status["status_str"] == "error" and status["completed"] is False
    assert [m[0] for m in status["messages"]] == ["execution_start", "execution_cached", "execution_error"]


def test_valid_model_files_load_and_render(emulator: EmulatorProcess) -> None:
    models = emulator.base_dir / "models"
    write_weights(models / "checkpoints" / "interiordesignsuperm_v2.safetensors")
    write_weights(models / "loras" / "indochine_v1.safetensors", bytes(32))
    comfy = Comfy(emulator.url)
    _, messages = comfy.run(graph())
    assert "execution_success" in [m["type"] for m in messages]
    assert emulator.stats()["lora_loads"] == 1 and emulator.stats()["checkpoint_loads"] == 1


def test_a_lora_read_once_is_not_read_again(emulator: EmulatorProcess) -> None:
    lora = write_weights(emulator.base_dir / "models" / "loras" / "indochine_v1.safetensors")
    comfy = Comfy(emulator.url)
    comfy.run(graph())
    lora.write_bytes(b"")  # LoraLoader keeps the LoRA it loaded last; the checkpoint is read each time
    _, messages = comfy.run(graph())
    assert "execution_success" in [m["type"] for m in messages]


def test_vae_loader_lists_taesd_pairs_and_pixel_space_and_reads_vae_files(emulator: EmulatorProcess) -> None:
    models = emulator.base_dir / "models"
    write_weights(models / "vae" / "sd15_vae.safetensors")
    write_weights(models / "vae_approx" / "taesd_encoder.safetensors")
    write_weights(models / "vae_approx" / "taesd_decoder.safetensors")
    write_weights(models / "vae_approx" / "taesdxl_decoder.safetensors")  # no encoder: not offered
    comfy = Comfy(emulator.url)
    info = comfy.http.get("/object_info/VAELoader").json()["VAELoader"]
    assert info["input"]["required"]["vae_name"] == [["sd15_vae.safetensors", "taesd", "pixel_space"]]
    (models / "vae" / "broken.safetensors").write_bytes(b"")
    for vae, ok in (
        ("pixel_space", True),
        ("taesd", True),
        ("sd15_vae.safetensors", True),
        ("broken.safetensors", False),
    ):
        g = graph(**{"8.vae": ["20", 0]})
        g["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": vae}}
        _, messages = comfy.run(g)
        kinds = [m["type"] for m in messages]
        assert ("execution_success" in kinds) is ok, (vae, kinds)


@pytest.mark.parametrize(
    "data",
    [b"", b"weights", b"\x80\x02}q\x00(X" + bytes(64), b"PK\x03\x04" + bytes(64), b"{}" + bytes(8),
     b"\x02" + bytes(7) + b"[]", b"\x02" + bytes(7) + b"\xff\xfe", b"\x02" + bytes(7) + b"{}xx"],
)  # fmt: skip
def test_header_checks_say_what_safetensors_says(tmp_path: Path, data: bytes) -> None:
    safetensors = pytest.importorskip("safetensors")
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    with pytest.raises(Exception) as real:
        with safetensors.safe_open(str(path), framework="numpy"):
            pass
    with pytest.raises(Exception) as mine:
        check_safetensors(path)
    assert f"{type(mine.value).__module__}.{type(mine.value).__qualname__}" == SAFETENSOR_ERROR
    assert f"{type(real.value).__module__}.{type(real.value).__qualname__}" == SAFETENSOR_ERROR
    assert str(mine.value) == str(real.value)


def test_a_valid_stand_in_passes_the_header_checks(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors")
    path = write_weights(tmp_path / "m.safetensors", bytes(12))
    check_safetensors(path)
    with safetensors.safe_open(str(path), framework="numpy") as f:
        assert list(f.keys()) == ["weight"]


def test_the_emulator_is_sized_as_a_fast_server_and_a_cpu_comfyui_as_a_slow_one(tmp_path: Path) -> None:
    emu = start_emulator(tmp_path / "e")
    try:
        assert read_workload(emu.url) is FAST_WORKLOAD
    finally:
        emu.kill()
    cpu = {"system": {"pytorch_version": "2.8.0+cpu"}, "devices": [{"name": "cpu", "type": "cpu"}]}
    cuda = {
        "system": {"pytorch_version": "2.8.0+cu128"},
        "devices": [{"name": "cuda:0 H200", "type": "cuda"}],
    }
    assert workload_of(cpu) is CPU_WORKLOAD and workload_of(cuda) is FAST_WORKLOAD
    assert CPU_WORKLOAD.long_side <= 256 and CPU_WORKLOAD.first_step_s >= 120
