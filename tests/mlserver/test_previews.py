"""Sampler live previews on the emulator's /ws, byte for byte in ComfyUI 0.3.64's format (reference §2.5):
event 1 (type, image type, JPEG) after `progress` without the feature flag, event 4 (type, metadata
length, metadata JSON, JPEG) before `progress` with it; none at all with `--preview-method none`."""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from websockets.sync.client import ClientConnection

from tests.mlserver.comfy_client import Comfy, graph
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator

STEPS = 4


@pytest.fixture
def previewing(tmp_path: Path) -> Iterator[EmulatorProcess]:
    if REAL_COMFYUI:
        pytest.skip(NEEDS_EMULATOR)
    emu = start_emulator(tmp_path / "comfyui", extra_args=["--preview-method", "auto"])
    try:
        yield emu
    finally:
        emu.kill()


def frames(comfy: Comfy, ws: ClientConnection, prompt_id: str) -> list[Any]:
    """Every frame of the prompt, text ones decoded, binary ones as they came, up to `executing` null."""
    seen: list[Any] = []
    while True:
        frame = ws.recv(timeout=30)
        if isinstance(frame, bytes):
            seen.append(frame)
            continue
        msg = json.loads(frame)
        seen.append(msg)
        data = msg["data"]
        if msg["type"] == "executing" and data["node"] is None and data["prompt_id"] == prompt_id:
            return seen


def run(comfy: Comfy, flags: dict[str, Any] | None, width: int = 256, height: int = 256) -> list[Any]:
    with comfy.ws() as ws:
        json.loads(ws.recv(timeout=10))
        if flags is not None:
            ws.send(json.dumps({"type": "feature_flags", "data": flags}))
            assert json.loads(ws.recv(timeout=10))["type"] == "feature_flags"
        g = graph(**{"3.steps": STEPS, "5.width": width, "5.height": height})
        prompt_id = comfy.post(g).json()["prompt_id"]
        return [prompt_id, *frames(comfy, ws, prompt_id)]


def jpeg(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "JPEG"
    return img


def sampler_sequence(seen: list[Any]) -> list[str]:
    """The frames from the sampler's first progress_state of a step on: names, `bin` for binary."""
    names = ["bin" if isinstance(f, bytes) else f["type"] for f in seen]
    return [n for n in names if n in ("progress_state", "progress", "bin")]


def test_without_the_flag_each_step_sends_event_1_after_its_progress(previewing: EmulatorProcess) -> None:
    comfy = Comfy(previewing.url)
    _, *seen = run(comfy, None, width=384, height=256)
    binary = [f for f in seen if isinstance(f, bytes)]
    assert len(binary) == STEPS
    images = []
    for frame in binary:
        event, image_type = struct.unpack(">II", frame[:8])
        assert (event, image_type) == (1, 1)  # PREVIEW_IMAGE, JPEG
        img = jpeg(frame[8:])
        assert img.size == (512, 341)  # fitted into --preview-size 512, as ImageOps.contain
        images.append(img.tobytes())
    assert len(set(images)) == STEPS  # the picture forms step by step
    steps = sampler_sequence(seen)
    first = steps.index("bin")
    assert steps[first - 2 : first + 1] == ["progress_state", "progress", "bin"]
    progress = [f for f in seen if isinstance(f, dict) and f["type"] == "progress"]
    assert [p["data"]["value"] for p in progress] == list(range(1, STEPS + 1))


def test_with_supports_preview_metadata_each_step_sends_event_4_before_its_progress(
    previewing: EmulatorProcess,
) -> None:
    comfy = Comfy(previewing.url)
    prompt_id, *seen = run(comfy, {"supports_preview_metadata": True})
    binary = [f for f in seen if isinstance(f, bytes)]
    assert len(binary) == STEPS
    for frame in binary:
        event, length = struct.unpack(">II", frame[:8])
        assert event == 4  # PREVIEW_IMAGE_WITH_METADATA
        meta_json = frame[8 : 8 + length]
        assert json.loads(meta_json) == {
            "node_id": "3",
            "prompt_id": prompt_id,
            "display_node_id": "3",
            "parent_node_id": None,
            "real_node_id": "3",
            "image_type": "image/jpeg",
        }
        assert meta_json.startswith(b'{"node_id": "3", "prompt_id": ')  # json.dumps' default separators
        assert jpeg(frame[8 + length :]).size == (512, 512)
    steps = sampler_sequence(seen)
    first = steps.index("bin")
    assert steps[first - 1 : first + 2] == ["progress_state", "bin", "progress"]


def test_the_flag_must_be_true_and_only_in_the_first_message(previewing: EmulatorProcess) -> None:
    comfy = Comfy(previewing.url)
    _, *seen = run(comfy, {"supports_preview_metadata": "yes"})
    assert {f[:4] for f in seen if isinstance(f, bytes)} == {struct.pack(">I", 1)}
    with comfy.ws() as ws:  # a feature_flags message that is not the first one is ignored
        json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "hello"}))
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        prompt_id = comfy.post(graph(**{"3.steps": STEPS})).json()["prompt_id"]
        seen = frames(comfy, ws, prompt_id)
    assert not any(isinstance(f, dict) and f["type"] == "feature_flags" for f in seen)
    assert {f[:4] for f in seen if isinstance(f, bytes)} == {struct.pack(">I", 1)}


def test_other_clients_get_no_previews_of_my_prompt(previewing: EmulatorProcess) -> None:
    comfy = Comfy(previewing.url)
    with comfy.ws(uuid.uuid4().hex) as other:
        json.loads(other.recv(timeout=10))
        run(comfy, None)
        binary = []
        try:
            while True:
                frame = other.recv(timeout=0.3)
                if isinstance(frame, bytes):
                    binary.append(frame)
        except TimeoutError:
            pass
    assert binary == []


def test_previews_are_off_by_default_as_in_comfyui(emulator: EmulatorProcess) -> None:
    comfy = Comfy(emulator.url)
    _, *seen = run(comfy, {"supports_preview_metadata": True})
    assert not any(isinstance(f, bytes) for f in seen)
    assert sum(1 for f in seen if isinstance(f, dict) and f["type"] == "progress") == STEPS
