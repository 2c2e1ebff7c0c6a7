"""ComfyUI protocol conformance over real HTTP and WebSocket.

Runs against the emulator (default) and, unchanged, against a real ComfyUI 0.3.64 when COMFYUI_URL is set
(with this project's models present there), on a GPU or a CPU: `workload` sizes the long renders and the
waits from the server's /system_stats. Emulator-only checks (restart, fault injection, model files) are in
test_emulator.py.
"""

from __future__ import annotations

import io
import json
import uuid

import httpx
import pytest
from PIL import Image

from tests.mlserver.comfy_client import Comfy, graph
from tests.support.comfy import SubmittedPrompts, Workload

pytestmark = pytest.mark.comfyui


@pytest.fixture
def comfy(comfyui_url: str, workload: Workload, submitted_prompts: SubmittedPrompts) -> Comfy:
    return Comfy(comfyui_url, submitted_prompts.add, workload.render_s)


def long_graph(w: Workload) -> dict:
    """A render still sampling when the test acts on it."""
    size = {"5.width": w.long_side, "5.height": w.long_side, "5.batch_size": w.long_batch}
    return graph(**{"3.steps": w.long_steps, **size})


def wait_for_sampling(ws, prompt_id: str | None, w: Workload) -> None:
    while True:
        msg = json.loads(ws.recv(timeout=w.first_step_s))
        if msg["type"] == "progress" and prompt_id in (None, msg["data"]["prompt_id"]):
            return


def types(messages: list[dict]) -> list[str]:
    return [m["type"] for m in messages if m["type"] not in ("status", "progress_state")]


def test_a_run_sends_comfyuis_message_sequence_and_writes_history(comfy: Comfy) -> None:
    prompt_id, messages = comfy.run(graph())
    seq = types(messages)
    assert seq[0] == "execution_start" and seq[1] == "execution_cached"
    assert seq[-2:] == ["execution_success", "executing"]
    executing = [m["data"]["node"] for m in messages if m["type"] == "executing"][:-1]
    cached = next(m for m in messages if m["type"] == "execution_cached")["data"]["nodes"]
    assert set(executing) | set(cached) == {"4", "10", "6", "7", "5", "3", "8", "9"}
    assert {"6", "3", "8", "9"} <= set(executing)  # the new text re-runs the encoder and everything after
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    assert [p["value"] for p in progress] == [1, 2, 3] and {p["max"] for p in progress} == {3}
    assert all(p["node"] == "3" and p["prompt_id"] == prompt_id for p in progress)
    executed = [m["data"] for m in messages if m["type"] == "executed"]
    assert executed[0]["node"] == "9" and executed[0]["display_node"] == "9"
    image = executed[0]["output"]["images"][0]
    assert image["type"] == "output" and image["subfolder"] == "renders"
    assert image["filename"].startswith("job_") and image["filename"].endswith("_.png")
    statuses = [m for m in messages if m["type"] == "status"]
    assert statuses[-1]["data"]["status"]["exec_info"]["queue_remaining"] == 0
    assert all(isinstance(m["data"]["timestamp"], int) for m in messages if "timestamp" in m["data"])

    entry = comfy.history(prompt_id)  # written before the final marker
    assert entry["prompt"][1] == prompt_id and entry["prompt"][4] == ["9"]
    assert entry["prompt"][3]["client_id"] == comfy.client_id
    assert entry["outputs"]["9"]["images"] == [image]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert entry["meta"]["9"] == {
        "node_id": "9",
        "display_node": "9",
        "parent_node": None,
        "real_node_id": "9",
    }

    png = comfy.http.get(
        "/view", params={"filename": image["filename"], "subfolder": "renders", "type": "output"}
    )
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["content-disposition"] == f'filename="{image["filename"]}"'
    img = Image.open(io.BytesIO(png.content))
    assert img.size == (256, 256)
    assert "prompt" in img.info and json.loads(img.info["prompt"])["3"]["class_type"] == "KSampler"


def test_an_identical_prompt_is_fully_cached_and_writes_no_new_file(comfy: Comfy) -> None:
    g = graph()
    _, first = comfy.run(g)
    _, again = comfy.run(g)
    cached = next(m for m in again if m["type"] == "execution_cached")["data"]["nodes"]
    assert set(cached) == set(g)
    assert [m for m in again if m["type"] == "executing"][:-1] == []
    name = lambda msgs: next(m for m in msgs if m["type"] == "executed")["data"]["output"]["images"]  # noqa: E731
    assert name(first) == name(again)
    _, new_seed = comfy.run({**g, "3": {**g["3"], "inputs": {**g["3"]["inputs"], "seed": 99}}})
    cached = next(m for m in new_seed if m["type"] == "execution_cached")["data"]["nodes"]
    assert "3" not in cached and "4" in cached and name(new_seed) != name(first)


def test_batch_size_gives_one_executed_with_every_image(comfy: Comfy) -> None:
    _, messages = comfy.run(graph(**{"5.batch_size": 2}))
    images = next(m for m in messages if m["type"] == "executed")["data"]["output"]["images"]
    assert len(images) == 2
    counters = [int(i["filename"].split("_")[-2]) for i in images]
    assert counters[1] == counters[0] + 1


def test_prompt_id_number_front_and_queue_listing(comfy: Comfy, workload: Workload) -> None:
    mine = str(uuid.uuid4())
    slow = long_graph(workload)
    with comfy.ws() as ws:
        ws.recv(timeout=10)
        first = comfy.post(slow, prompt_id=mine).json()
        assert first["prompt_id"] == mine and first["node_errors"] == {}
        assert isinstance(first["number"], int)
        second = comfy.post(graph()).json()
        assert second["number"] == first["number"] + 1
        front = comfy.post(graph(), front=True).json()
        assert front["number"] < 0
        explicit = comfy.post(graph(), number=5).json()
        assert explicit["number"] == 5.0 and isinstance(explicit["number"], float)
        queue = comfy.http.get("/queue").json()
        assert len(queue["queue_running"]) <= 1
        items = queue["queue_running"] + queue["queue_pending"]
        assert all(len(item) == 5 for item in items)
        assert {second["prompt_id"], front["prompt_id"], explicit["prompt_id"]} <= {i[1] for i in items}
        pending = sorted(queue["queue_pending"], key=lambda i: (i[0], i[1]))
        if pending:
            assert pending[0][1] == front["prompt_id"]
        assert comfy.http.get("/prompt").json()["exec_info"]["queue_remaining"] == len(items)
        for pid in (second["prompt_id"], front["prompt_id"], explicit["prompt_id"]):
            comfy.http.post("/queue", json={"delete": [pid]})
        comfy.http.post("/interrupt", json={"prompt_id": mine})
        comfy.collect(ws, mine)


def test_interrupt_targets_only_the_running_prompt(comfy: Comfy, workload: Workload) -> None:
    with comfy.ws() as ws:
        ws.recv(timeout=10)
        running = comfy.post(long_graph(workload)).json()["prompt_id"]
        waiting = comfy.post(graph()).json()["prompt_id"]
        wait_for_sampling(ws, running, workload)
        assert comfy.http.post("/interrupt", json={"prompt_id": waiting}).content == b""  # not running: no-op
        r = comfy.http.post("/interrupt", json={"prompt_id": running})
        assert r.status_code == 200 and r.content == b""
        messages = comfy.collect(ws, running)
        interrupted = next(m for m in messages if m["type"] == "execution_interrupted")["data"]
        assert interrupted["prompt_id"] == running and interrupted["node_type"] == "KSampler"
        assert set(interrupted) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
        assert "execution_success" not in types(messages)
        comfy.collect(ws, waiting)  # the queue goes on
    entry = comfy.history(running)
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert comfy.history(waiting)["status"]["status_str"] == "success"


def test_a_tests_prompts_leave_the_queue_when_it_ends_and_no_one_elses(
    comfy: Comfy, comfyui_url: str, workload: Workload
) -> None:
    prompts = SubmittedPrompts(comfyui_url, workload.first_step_s)
    mine = Comfy(comfyui_url, prompts.add, workload.render_s)
    try:
        with mine.ws() as ws, comfy.ws() as other_ws:
            ws.recv(timeout=10)
            other_ws.recv(timeout=10)
            running = mine.post(long_graph(workload)).json()["prompt_id"]
            pending = mine.post(long_graph(workload)).json()["prompt_id"]
            someone_elses = comfy.post(graph()).json()["prompt_id"]
            wait_for_sampling(ws, running, workload)
            prompts.clear()  # what the fixture does at teardown, passed or failed
            queued = comfy.http.get("/queue").json()
            assert {running, pending}.isdisjoint(
                i[1] for i in queued["queue_running"] + queued["queue_pending"]
            )
            assert "execution_success" in types(comfy.collect(other_ws, someone_elses))
    finally:
        prompts.clear()
    assert comfy.history(running)["status"]["status_str"] == "error"
    assert comfy.history(pending) == {}


def test_global_interrupt_and_idle_interrupt(comfy: Comfy, workload: Workload) -> None:
    assert comfy.http.post("/interrupt", json={}).status_code == 200  # idle: forgotten
    with comfy.ws() as ws:
        ws.recv(timeout=10)
        pid = comfy.post(long_graph(workload)).json()["prompt_id"]
        wait_for_sampling(ws, None, workload)
        comfy.http.post("/interrupt")
        assert "execution_interrupted" in types(comfy.collect(ws, pid))
    _, messages = comfy.run(graph())  # the idle interrupt above did not hit this one
    assert "execution_success" in types(messages)


def test_upload_then_load_image_in_the_sketch_graph(comfy: Comfy) -> None:
    img = Image.new("RGB", (320, 240), "white")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    sub = f"sketches/{uuid.uuid4().hex[:6]}"
    r = comfy.http.post(
        "/upload/image",
        files={"image": ("s.png", buf.getvalue(), "image/png")},
        data={"subfolder": sub, "type": "input"},
    )
    assert r.status_code == 200 and r.json() == {"name": "s.png", "subfolder": sub, "type": "input"}
    again = comfy.http.post(
        "/upload/image", files={"image": ("s.png", buf.getvalue(), "image/png")}, data={"subfolder": sub}
    )
    assert again.json()["name"] == "s.png"  # same content: same name
    other = io.BytesIO()
    Image.new("RGB", (320, 240), "black").save(other, "PNG")
    renamed = comfy.http.post(
        "/upload/image", files={"image": ("s.png", other.getvalue(), "image/png")}, data={"subfolder": sub}
    )
    assert renamed.json()["name"] == "s (1).png"
    _, messages = comfy.run(
        graph("sketch2img", **{"11.image": f"{sub}/s.png", "13.width": 256, "13.height": 256})
    )
    assert "execution_success" in types(messages)
    escape = comfy.http.post(
        "/upload/image", files={"image": ("x.png", b"x", "image/png")}, data={"subfolder": "../../etc"}
    )
    assert escape.status_code == 400
    assert comfy.http.post("/upload/image", data={"type": "input"}).status_code == 400


def test_a_non_image_upload_fails_at_execution_with_execution_error(comfy: Comfy) -> None:
    name = f"broken-{uuid.uuid4().hex[:6]}.png"
    comfy.http.post("/upload/image", files={"image": (name, b"not an image", "image/png")})
    pid, messages = comfy.run(graph("sketch2img", **{"11.image": name}))
    error = next(m for m in messages if m["type"] == "execution_error")["data"]
    assert error["node_type"] == "LoadImage" and error["node_id"] == "11"
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    assert error["exception_message"].endswith("\n")
    assert {"traceback", "current_inputs", "current_outputs", "executed", "timestamp"} <= set(error)
    assert comfy.history(pid)["status"]["status_str"] == "error"


def error_of(r: httpx.Response) -> dict:
    assert r.status_code == 400, r.text
    return r.json()


def test_prompt_level_validation_errors(comfy: Comfy) -> None:
    body = error_of(comfy.http.post("/prompt", json={"client_id": "x"}))
    assert body == {
        "error": {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        },
        "node_errors": {},
    }
    g = graph()
    del g["4"]["class_type"]
    assert error_of(comfy.post(g))["error"] == {
        "type": "invalid_prompt",
        "message": "Cannot execute because a node is missing the class_type property.",
        "details": "Node ID '#4'",
        "extra_info": {},
    }
    g = graph()
    g["4"]["class_type"] = "NoSuchNode"
    assert (
        error_of(comfy.post(g))["error"]["message"]
        == "Cannot execute because node NoSuchNode does not exist."
    )
    g = graph()
    del g["9"]
    assert error_of(comfy.post(g))["error"]["type"] == "prompt_no_outputs"
    assert error_of(comfy.post(graph(), partial_execution_targets=[]))["error"]["type"] == "prompt_no_outputs"
    assert comfy.http.post("/prompt", content=b"not json").status_code == 500


def node_error(r: httpx.Response, node: str) -> list[dict]:
    body = error_of(r)
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["error"]["message"] == "Prompt outputs failed validation"
    entry = body["node_errors"][node]
    assert "9" in entry["dependent_outputs"]
    return entry["errors"]


def test_node_validation_errors_have_comfyuis_shape(comfy: Comfy) -> None:
    (err,) = node_error(comfy.post(graph(**{"3.sampler_name": "euler_a"})), "3")
    assert err == {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": "sampler_name: 'euler_a' not in (list of length 42)",
        "extra_info": {"input_name": "sampler_name", "input_config": None, "received_value": "euler_a"},
    }
    (err,) = node_error(comfy.post(graph(**{"3.scheduler": "fast"})), "3")
    assert err["details"].startswith("scheduler: 'fast' not in ['simple', 'sgm_uniform', 'karras'")
    assert err["extra_info"]["input_config"][0][:2] == ["simple", "sgm_uniform"]
    (err,) = node_error(comfy.post(graph(**{"3.seed": -1})), "3")
    assert err["type"] == "value_smaller_than_min" and err["message"] == "Value -1 smaller than min of 0"
    assert err["details"] == "seed" and err["extra_info"]["input_config"][0] == "INT"
    (err,) = node_error(comfy.post(graph(**{"3.steps": 10001})), "3")
    assert err["type"] == "value_bigger_than_max" and err["message"] == "Value 10001 bigger than max of 10000"
    (err,) = node_error(comfy.post(graph(**{"3.cfg": "high"})), "3")
    assert (
        err["type"] == "invalid_input_type"
        and err["message"] == "Failed to convert an input value to a FLOAT value"
    )
    (err,) = node_error(comfy.post(graph(**{"4.ckpt_name": "nope.safetensors"})), "4")
    assert err["type"] == "value_not_in_list" and err["extra_info"]["received_value"] == "nope.safetensors"
    g = graph()
    del g["3"]["inputs"]["steps"]
    (err,) = node_error(comfy.post(g), "3")
    assert err == {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": "steps",
        "extra_info": {"input_name": "steps"},
    }
    (err,) = node_error(comfy.post(graph(**{"3.positive": ["6", 0, 1]})), "3")
    assert err["type"] == "bad_linked_input"
    (err,) = node_error(comfy.post(graph(**{"3.positive": ["5", 0]})), "3")
    assert err["type"] == "return_type_mismatch"
    assert err["details"] == "positive, received_type(LATENT) mismatch input_type(CONDITIONING)"


def test_missing_input_image_and_links_to_missing_nodes(comfy: Comfy) -> None:
    (err,) = node_error(comfy.post(graph("sketch2img", **{"11.image": "nope/none.png"})), "11")
    assert err == {
        "type": "custom_validation_failed",
        "message": "Custom validation failed for node",
        "details": "image - Invalid image file: nope/none.png",
        "extra_info": {"input_name": "image"},
    }
    body = error_of(comfy.post(graph(**{"9.images": ["99", 0]})))
    (err,) = body["node_errors"]["9"]["errors"]
    assert err["type"] == "exception_during_validation" and err["details"] == "'99'"
    assert err["extra_info"]["exception_type"] == "KeyError"
    assert body["error"]["details"] == "Exception when validating node: '99'"


def test_values_are_coerced_in_the_queued_prompt(comfy: Comfy) -> None:
    pid, _ = comfy.run(graph(**{"3.steps": "2", "5.width": 256.9}))
    stored = comfy.history(pid)["prompt"][2]
    assert stored["3"]["inputs"]["steps"] == 2 and stored["5"]["inputs"]["width"] == 256


def test_history_routes(comfy: Comfy) -> None:
    ids = [comfy.run(graph())[0] for _ in range(3)]
    assert comfy.http.get("/history/not-a-prompt").json() == {}
    recent = comfy.http.get("/history", params={"max_items": 2}).json()
    assert list(recent) == ids[1:]
    assert comfy.http.get("/history", params={"max_items": 1, "offset": 10**6}).json() == {}
    assert comfy.http.post("/history", json={"delete": [ids[0]]}).content == b""
    assert comfy.history(ids[0]) == {}
    assert comfy.http.get("/api/history/" + ids[1]).json()[ids[1]]["status"]["completed"] is True


def test_view_guards(comfy: Comfy) -> None:
    get = lambda **q: comfy.http.get("/view", params=q).status_code  # noqa: E731
    assert comfy.http.get("/view").status_code == 404
    assert get(filename="../secret.png") == 400
    assert get(filename="/etc/passwd") == 400
    assert get(filename="x.png", type="nope") == 400
    assert get(filename="x.png", subfolder="../../") == 403
    assert get(filename="no-such-file.png") == 404


def test_models_object_info_features_system_stats(comfy: Comfy) -> None:
    assert "interiordesignsuperm_v2.safetensors" in comfy.http.get("/models/checkpoints").json()
    loras = comfy.http.get("/models/loras").json()
    assert {"indochine_v1.safetensors", "minimalist_v1.safetensors"} <= set(loras)
    assert "control_v11p_sd15_scribble.safetensors" in comfy.http.get("/models/controlnet").json()
    assert comfy.http.get("/models/unet").status_code == 404
    assert comfy.http.get("/models").json()[:3] == ["checkpoints", "configs", "loras"]
    info = comfy.http.get("/object_info/KSampler").json()["KSampler"]
    sampler = info["input"]["required"]["sampler_name"][0]
    assert len(sampler) == 42 and sampler[:3] == ["euler", "euler_cfg_pp", "euler_ancestral"]
    assert info["input"]["required"]["seed"][1]["max"] == 18446744073709551615
    assert info["output"] == ["LATENT"] and info["output_node"] is False
    assert comfy.http.get("/object_info/NoSuchNode").json() == {}
    everything = comfy.http.get("/object_info").json()
    for name in (
        "CheckpointLoaderSimple",
        "LoraLoader",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "KSamplerAdvanced",
        "VAEDecode",
        "VAEEncode",
        "SaveImage",
        "PreviewImage",
        "LoadImage",
        "ImageInvert",
        "ImageScale",
        "ControlNetLoader",
        "ControlNetApplyAdvanced",
        "LatentUpscaleBy",
        "ImageScaleBy",
    ):
        assert name in everything, name
    assert everything["SaveImage"]["output_node"] is True
    assert everything["Canny"]["display_name"] is None
    features = comfy.http.get("/features").json()
    assert features["supports_preview_metadata"] is True and "max_upload_size" in features
    stats = comfy.http.get("/system_stats").json()
    assert stats["system"]["comfyui_version"] == "0.3.64" and stats["devices"]
    assert comfy.http.post("/free", json={"free_memory": True}).content == b""


def taesd_pairs(approx: list[str]) -> list[str]:
    def has(name: str, part: str) -> bool:
        return any(a.startswith(f"{name}_{part}.") for a in approx)

    return [n for n in ("taesd", "taesdxl", "taesd3", "taef1") if has(n, "encoder") and has(n, "decoder")]


def test_vae_loader_offers_the_vae_folder_taesd_pairs_and_pixel_space(comfy: Comfy) -> None:
    vaes = comfy.http.get("/models/vae").json()
    approx = comfy.http.get("/models/vae_approx").json()
    info = comfy.http.get("/object_info/VAELoader").json()["VAELoader"]
    assert info["input"]["required"]["vae_name"] == [[*vaes, *taesd_pairs(approx), "pixel_space"]]


def test_lora_loader_model_only_shares_lora_loaders_description(comfy: Comfy) -> None:
    everything = comfy.http.get("/object_info").json()
    lora, model_only = everything["LoraLoader"], everything["LoraLoaderModelOnly"]
    assert model_only["description"] == lora["description"] and lora["description"].startswith("LoRAs are")
    assert model_only["output_tooltips"] == lora["output_tooltips"]
    assert model_only["display_name"] == "LoraLoaderModelOnly" and model_only["category"] == "loaders"


def test_api_prefix_and_origin_guard(comfy: Comfy) -> None:
    assert comfy.http.get("/api/prompt").json() == comfy.http.get("/prompt").json()
    host = comfy.url.split("://")[1]
    r = comfy.http.get("/prompt", headers={"Host": host, "Origin": "http://evil.example"})
    assert r.status_code == 403


def test_websocket_first_frame_routing_and_feature_flags(comfy: Comfy) -> None:
    with comfy.ws() as mine, comfy.ws(uuid.uuid4().hex) as other:
        assert json.loads(mine.recv(timeout=10))["data"]["sid"] == comfy.client_id
        json.loads(other.recv(timeout=10))
        other.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        flags = json.loads(other.recv(timeout=10))
        assert flags["type"] == "feature_flags" and flags["data"]["supports_preview_metadata"] is True
        pid = comfy.post(graph()).json()["prompt_id"]
        comfy.collect(mine, pid)
        seen = []
        try:
            while True:
                seen.append(json.loads(other.recv(timeout=0.5))["type"])
        except TimeoutError:
            pass
        assert set(seen) <= {"status", "progress", "progress_state"}  # never another client's results
    with httpx.Client(base_url=comfy.url) as c:
        unnamed = comfy.url.replace("http", "ws", 1) + "/ws"
        from websockets.sync.client import connect

        with connect(unnamed) as ws:
            sid = json.loads(ws.recv(timeout=10))["data"]["sid"]
        assert len(sid) == 32 and all(ch in "0123456789abcdef" for ch in sid)
        assert c.get("/prompt").status_code == 200
