"""What the servers can render, over real HTTP on SQLite and PostgreSQL, against two emulators (text and
sketch) whose models folders are filled per test: styles whose LoRA a server lacks, /readyz's missing
files, and the notice of a queued job whose server is down."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.availability import judge, waiting_notice
from backend.config import ComfyInstance
from backend.instances import PROBE_TIMEOUT_S, InstanceState, Snapshot
from backend.schemas import StyleAvailability
from contract.styles import load_manifest
from tests.factories import fill_models, job_body, safetensors, sketch_png
from tests.support.api import assert_error
from tests.support.backend import Stack, make_settings, start_stack
from tests.support.comfy import REAL_COMFYUI, EmulatorProcess, start_emulator
from tests.support.net import wait_until

pytestmark = pytest.mark.skipif(bool(REAL_COMFYUI), reason="fills the emulators' models folders")
TTL_S = 0.2


def emulator_with(base: Path, models: dict[str, list[str]]) -> EmulatorProcess:
    """An emulator whose models folders hold exactly `models` (a folder not named serves every project
    model, as the emulator does for an empty folder)."""
    fill_models(base, models)
    return start_emulator(base)


@pytest.fixture
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[EmulatorProcess, ...]]:
    """(text, sketch) emulators; `indirect` parameters: the models of each."""
    text_models, sketch_models = getattr(request, "param", ({}, {}))
    text = emulator_with(tmp_path / "text", text_models)
    sketch = emulator_with(tmp_path / "sketch", sketch_models)
    try:
        yield text, sketch
    finally:
        text.kill()
        sketch.kill()


@pytest.fixture
def two_stack(db_url: str, tmp_path: Path, servers: tuple[EmulatorProcess, ...]) -> Iterator[Stack]:
    text, sketch = servers
    address = f"text=127.0.0.1:{text.port},sketch=127.0.0.1:{sketch.port}"
    with start_stack(db_url, tmp_path, address, comfy_models_ttl_s=TTL_S) as stack:
        yield stack


NO_INDOCHINE_ON_TEXT = ({"loras": ["minimalist_v1.safetensors"]}, {})
NO_CONTROLNET_ON_SKETCH = ({}, {"controlnet": ["control_v11p_sd15_canny.safetensors"]})


def sketch_job(c: httpx.Client, **overrides: Any) -> httpx.Response:
    upload = c.post("/api/uploads", files={"file": ("plan.png", sketch_png(), "image/png")}).json()
    return c.post("/api/jobs", json=job_body(kind="sketch", upload_id=upload["id"], **overrides))


@pytest.mark.parametrize("servers", [NO_INDOCHINE_ON_TEXT], indirect=True)
def test_a_style_whose_lora_the_text_server_lacks_is_unavailable_for_text_only(
    two_stack: Stack, servers: tuple[EmulatorProcess, ...]
) -> None:
    text_name = f"127.0.0.1:{servers[0].port}"
    with two_stack.client() as c:
        styles = {s["id"]: s for s in c.get("/api/styles").json()}
        indochine = styles["indochine"]
        assert indochine["available"] is False
        assert indochine["kinds"]["sketch"]["available"] is True
        text = indochine["kinds"]["text"]
        assert (text["available"], text["code"]) == (False, "style_unavailable")
        assert text["missing"] == ["indochine_v1.safetensors"] and text["servers"] == [text_name]
        assert "indochine_v1.safetensors" in indochine["unavailable_reason"]
        assert text_name in indochine["unavailable_reason"]
        assert styles["minimalist"]["available"] and styles["none"]["available"]

        err = assert_error(c.post("/api/jobs", json=job_body(style="indochine")), 409, "style_unavailable")
        assert "indochine_v1.safetensors" in err["message"] and text_name in err["message"]
        assert err["details"][0]["field"] == "style"
        assert c.get("/api/jobs").json()["items"] == []  # nothing queued that could only fail
        assert c.post("/api/jobs", json=job_body(style="minimalist")).status_code == 201
        assert sketch_job(c, style="indochine").status_code == 201


@pytest.mark.parametrize("servers", [NO_INDOCHINE_ON_TEXT], indirect=True)
def test_a_lora_removed_from_a_server_is_seen_within_the_ttl_and_a_retry_is_refused(
    two_stack: Stack, servers: tuple[EmulatorProcess, ...]
) -> None:
    loras = servers[0].base_dir / "models" / "loras"
    with two_stack.client() as c:
        job = c.post("/api/jobs", json=job_body(style="minimalist")).json()
        (loras / "other_v1.safetensors").write_bytes(safetensors())
        (loras / "minimalist_v1.safetensors").unlink()

        def minimalist_for_text() -> bool:
            styles = {s["id"]: s for s in c.get("/api/styles").json()}
            return bool(styles["minimalist"]["kinds"]["text"]["available"])

        wait_until(lambda: not minimalist_for_text(), 10, what="the removed LoRA to be seen")
        err = assert_error(c.post(f"/api/jobs/{job['id']}/retry"), 409, "style_unavailable")
        assert "minimalist_v1.safetensors" in err["message"]


@pytest.mark.parametrize("servers", [NO_INDOCHINE_ON_TEXT], indirect=True)
def test_readyz_is_degraded_with_the_missing_lora(
    two_stack: Stack, servers: tuple[EmulatorProcess, ...]
) -> None:
    r = httpx.get(f"{two_stack.url}/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "degraded"
    text, sketch = (body["checks"]["comfyui"][f"127.0.0.1:{e.port}"] for e in servers)
    assert text["ok"] is True and text["missing"] == {"loras": ["indochine_v1.safetensors"]}
    assert sketch == {"ok": True, "version": sketch["version"], "missing": {}}


@pytest.mark.parametrize("servers", [NO_CONTROLNET_ON_SKETCH], indirect=True)
def test_a_missing_controlnet_makes_readyz_not_ready_and_refuses_sketch_jobs(
    two_stack: Stack, servers: tuple[EmulatorProcess, ...]
) -> None:
    r = httpx.get(f"{two_stack.url}/readyz")
    assert r.status_code == 503, r.text
    assert r.json()["status"] == "not_ready"
    sketch = r.json()["checks"]["comfyui"][f"127.0.0.1:{servers[1].port}"]
    assert sketch["ok"] is False
    assert sketch["missing"] == {"controlnet": ["control_v11p_sd15_scribble.safetensors"]}
    with two_stack.client() as c:
        err = assert_error(sketch_job(c, style="none"), 409, "models_missing")
        assert "control_v11p_sd15_scribble.safetensors" in err["message"]
        assert c.post("/api/jobs", json=job_body(style="none")).status_code == 201
        assert c.get("/api/styles").json()[0]["kinds"]["text"]["available"] is True


def position_messages(stack: Stack, job_id: str, until: Any) -> list[dict[str, Any]]:
    """The job's SSE `position` messages, read until `until(message)` is true."""
    seen: list[dict[str, Any]] = []
    with (
        stack.client() as c,
        c.stream("GET", f"/api/jobs/{job_id}/events", timeout=httpx.Timeout(30.0)) as r,
    ):
        for line in r.iter_lines():
            if line.startswith("data: "):
                message = json.loads(line.removeprefix("data: "))
                if message["type"] == "position":
                    seen.append(message)
                    if until(message):
                        return seen
    raise AssertionError(f"the stream ended first: {seen}")


def test_a_sketch_job_says_its_server_is_down_and_renders_once_it_is_back(
    two_stack: Stack, servers: tuple[EmulatorProcess, ...]
) -> None:
    _text, sketch = servers
    sketch_name = f"127.0.0.1:{sketch.port}"
    dispatcher = two_stack.dispatcher_thread().start()
    try:
        with two_stack.client() as c:
            sketch.kill()
            job = sketch_job(c, style="indochine").json()  # unknown is not unavailable: accepted
            assert job["status"] == "queued"
            styles = {s["id"]: s for s in c.get("/api/styles").json()}
            assert styles["indochine"]["kinds"]["sketch"]["available"] is True

            def notice() -> dict[str, Any] | None:
                return c.get(f"/api/jobs/{job['id']}").json()["notice"]

            def statuses() -> set[str]:
                return {j["status"] for j in c.get("/api/jobs").json()["items"]}

            wait_until(lambda: notice() is not None, 10, what="the waiting notice")
            waiting = notice()
            assert c.get("/api/jobs").json()["items"][0]["notice"] == waiting
            assert waiting is not None and waiting["code"] == "server_down"
            assert waiting["servers"] == [sketch_name]
            assert "sketch server" in waiting["message"] and sketch_name in waiting["message"]
            assert "when it is back" in waiting["message"] and "http" not in waiting["message"]
            streamed = position_messages(two_stack, job["id"], lambda m: m["data"]["notice"])
            assert streamed[-1]["data"]["notice"] == waiting and streamed[-1]["data"]["position"] == 1
            assert httpx.get(f"{two_stack.url}/readyz").status_code == 503

            assert sketch_job(c, style="none").json()["notice"] == waiting  # said at once
            other = c.post("/api/jobs", json=job_body(style="none")).json()
            assert other["notice"] is None and c.get(f"/api/jobs/{other['id']}").json()["notice"] is None
            wait_until(lambda: c.get(f"/api/jobs/{other['id']}").json()["status"] == "succeeded", 30)
            assert c.get(f"/api/jobs/{job['id']}").json()["status"] == "queued"

            sketch.start()
            wait_until(lambda: c.get(f"/api/jobs/{job['id']}").json()["status"] == "succeeded", 60)
            assert notice() is None
            wait_until(lambda: statuses() == {"succeeded"}, 60, what="every job, both sketches included")
    finally:
        dispatcher.stop()


def test_no_comfyui_configured_leaves_every_style_available(api_stack: Stack) -> None:
    with api_stack.client() as c:
        styles = c.get("/api/styles").json()
        assert all(s["available"] and s["unavailable_reason"] is None for s in styles)
        job = c.post("/api/jobs", json=job_body()).json()
        assert job["notice"] is None and c.get(f"/api/jobs/{job['id']}").json()["notice"] is None


# --- the judgement itself, on snapshots built by hand (several instances per kind) --------------------


def state(port: int, kinds: set[str], loras: set[str] | None, reachable: bool = True) -> InstanceState:
    settings = make_settings("sqlite+aiosqlite:///unused.db", Path("unused"), None)
    models = {"checkpoints": frozenset({settings.checkpoint_name})}
    models["controlnet"] = frozenset({settings.controlnet_name})
    if loras is not None:
        models["loras"] = frozenset(loras)
    instance = ComfyInstance(f"http://user:secret@10.0.0.{port % 250}:{port}", frozenset(kinds))
    return InstanceState(instance, reachable, None if reachable else "ConnectError", "0.3.64", models)


def verdict(*states: InstanceState, kind: str = "text") -> StyleAvailability:
    settings = make_settings("sqlite+aiosqlite:///unused.db", Path("unused"), None)
    return judge(Snapshot(states, 0.0), settings, kind, load_manifest().get("indochine"))


def test_one_instance_of_the_kind_with_the_lora_is_enough() -> None:
    assert verdict(
        state(8188, {"text"}, set()), state(8190, {"text"}, {"indochine_v1.safetensors"})
    ).available


def test_a_lora_missing_on_every_instance_names_each_without_credentials() -> None:
    result = verdict(state(8188, {"text"}, set()), state(8190, {"text", "sketch"}, set()))
    assert (result.available, result.code) == (False, "style_unavailable")
    assert result.servers == ["10.0.0.188:8188", "10.0.0.190:8190"]
    assert (
        "the text server 10.0.0.188:8188" in result.reason
        and "ComfyUI server 10.0.0.190:8190" in result.reason
    )
    assert "secret" not in result.reason


def test_an_unreachable_or_unlisted_instance_is_unknown_not_missing() -> None:
    assert verdict(state(8188, {"text"}, set()), state(8190, {"text"}, set(), reachable=False)).available
    assert verdict(state(8188, {"text"}, set()), state(8190, {"text"}, None)).available
    assert verdict(state(8188, {"sketch"}, set())).available  # no text server: nothing to judge


def test_the_notice_names_every_server_of_the_kind_once_all_are_down() -> None:
    down = state(8189, {"sketch"}, set(), reachable=False)
    assert waiting_notice(Snapshot((down, state(8191, {"sketch"}, set())), 0.0), "sketch") is None
    notice = waiting_notice(Snapshot((down, state(8188, {"text"}, set())), 0.0), "sketch")
    assert notice is not None and notice.servers == ["10.0.0.189:8189"]
    assert waiting_notice(None, "sketch") is None  # nothing known yet


def test_a_server_that_never_answers_costs_the_request_path_nothing_once_looked_at(
    db_url: str, tmp_path: Path
) -> None:
    """A stale look is answered at once while the next one runs behind it (only the first look waits)."""
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"text=127.0.0.1:{silent.getsockname()[1]}"
        with start_stack(db_url, tmp_path, address, comfy_models_ttl_s=TTL_S) as stack:
            with stack.client() as c:
                assert c.get("/api/styles").status_code == 200  # the first look: up to the probe timeout
                job = c.post("/api/jobs", json=job_body()).json()
                time.sleep(TTL_S * 2)
                for _ in range(5):
                    started = time.monotonic()
                    assert c.get(f"/api/jobs/{job['id']}").json()["notice"]["code"] == "server_down"
                    assert c.post("/api/jobs", json=job_body()).status_code == 201
                    assert time.monotonic() - started < PROBE_TIMEOUT_S / 2
