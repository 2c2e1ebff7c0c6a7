"""ML-server provisioning: the lock pins everything, install.sh does what each role needs (dry run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlserver.provision.lock import LOCK_PATH, LockError, load_lock, parse_lock

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "mlserver" / "provision" / "install.sh"
REQUIRED_NODES = {
    "ComfyUI-Manager",
    "comfyui_controlnet_aux",
    "ComfyUI_Comfyroll_CustomNodes",
    "ComfyUI_IPAdapter_plus",
}
# The packs whose classes tests/data/object_info/packs.json records: that record was taken at these commits.
RECORDED_PACKS = {
    "comfyui_controlnet_aux": "cc6b232f4a47f0cdf70f4e1bfa24b74bd0d75bf1",
    "ComfyUI_IPAdapter_plus": "9d076a3df0d2763cef5510ec5ab807f6632c39f5",
}


def test_the_lock_pins_comfyui_0_3_64_and_every_custom_node_to_a_commit() -> None:
    lock = load_lock()
    assert lock.version == "0.3.64"
    assert lock.comfyui.repo == "https://github.com/comfyanonymous/ComfyUI"
    assert {n.name for n in lock.custom_nodes} == REQUIRED_NODES
    for repo in lock.repos:
        assert re.fullmatch(r"[0-9a-f]{40}", repo.commit), repo
        assert repo.repo.startswith("https://github.com/")
    assert all("==" in p for p in lock.torch_packages)


def test_the_sagemaker_image_installs_the_locks_custom_nodes_and_names_them() -> None:
    build = (ROOT / "mlserver" / "sagemaker" / "build-comfyui.sh").read_text()
    assert "done < <(lock --repos)" in build  # every repo of the lock, each at its commit
    dockerfile = (ROOT / "mlserver" / "sagemaker" / "Dockerfile").read_text()
    assert all(node in dockerfile for node in REQUIRED_NODES)


def test_the_packs_the_recorded_object_info_describes_are_locked_at_the_recorded_commits() -> None:
    locked = {n.name: n.commit for n in load_lock().custom_nodes}
    assert {name: locked.get(name) for name in RECORDED_PACKS} == RECORDED_PACKS
    readme = (ROOT / "tests" / "data" / "object_info" / "README.md").read_text()
    for commit in RECORDED_PACKS.values():
        assert commit in readme  # change the lock, record packs.json again


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ('commit = "a125cd84"', "not a full 40-hex commit"),
        ('repo = "http://example.com/ComfyUI"', "is not an https://github.com"),
        ('"torch==2.8.0"', "pinned with =="),
    ],
)
def test_a_malformed_lock_is_refused_with_the_reason(broken: str, problem: str) -> None:
    text = LOCK_PATH.read_text()
    original = {
        'commit = "a125cd84"': 'commit = "a125cd84b054a57729b5eecab930ca9408719832"',
        'repo = "http://example.com/ComfyUI"': 'repo = "https://github.com/comfyanonymous/ComfyUI"',
        '"torch==2.8.0"': '"torch==2.8.0"',
    }[broken]
    replacement = '"torch>=2.8"' if broken.startswith('"torch') else broken
    with pytest.raises(LockError, match=problem):
        parse_lock(text.replace(original, replacement, 1))


def install(role: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STUDIO_ROOT": str(ROOT),
        "COMFYUI_ROOT": str(tmp_path / "comfyui"),
        "STATE_DIR": str(tmp_path / "state"),
        "ETC_DIR": str(tmp_path / "etc"),
        "SYSTEMD_DIR": str(tmp_path / "systemd"),
        "PYTHON": sys.executable,
    }
    return subprocess.run(
        ["bash", str(INSTALL), role, *extra], capture_output=True, text=True, env=env, timeout=60
    )


def test_install_sh_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True).returncode == 0


def test_the_mlserver_role_checks_out_every_locked_commit_and_starts_sync_then_comfyui(
    tmp_path: Path,
) -> None:
    done = install("mlserver", tmp_path, "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for repo in load_lock().repos:
        assert f"checkout --quiet --detach {repo.commit}" in out, repo.name
        assert f"git clone --quiet --no-checkout {repo.repo}" in out
    assert f"--index-url {load_lock().torch_index_url}" in out
    assert "custom_nodes/comfyui_controlnet_aux/requirements.txt" in out
    assert "ComfyUI_Comfyroll_CustomNodes/requirements" not in out  # it has none
    assert "ComfyUI_IPAdapter_plus/requirements" not in out  # nor this one
    enable = "systemctl enable --now studio.target studio-model-sync.service"
    assert f"{enable} comfyui@8188.service comfyui@8189.service" in out
    assert "systemctl enable --now studio-model-refresh.timer" in out
    for port in (8188, 8189):
        assert f"{tmp_path}/state/comfyui/{port}/input" in out


def test_the_backend_role_installs_the_api_dispatcher_and_ui(tmp_path: Path) -> None:
    done = install("backend", tmp_path, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert (
        "systemctl enable --now studio.target studio-backend.service studio-dispatcher.service" in done.stdout
    )
    assert "git clone" not in done.stdout and "comfyui@" not in done.stdout
    assert f"pip install -q -e {ROOT}[cutout]" in done.stdout  # rembg and onnxruntime for product photos
    assert f"{ROOT}/.venv/bin/python -c import rembg" in done.stdout  # numba kernels compiled as root


def test_every_unit_install_sh_copies_exists_and_every_unit_is_installed_by_a_role(tmp_path: Path) -> None:
    copied = set()
    for role in ("backend", "mlserver"):
        out = install(role, tmp_path, "--dry-run").stdout
        copied |= set(re.findall(r"install -m 0644 \S+/systemd/(\S+) ", out))
    units = (".service", ".target", ".timer")
    assert copied == {p.name for p in (ROOT / "systemd").iterdir() if p.suffix in units}


def test_an_unknown_role_or_flag_is_a_usage_error(tmp_path: Path) -> None:
    for role, extra in (("gpu", ()), ("backend", ("--force",)), ("", ())):
        done = install(role, tmp_path, *extra)
        assert done.returncode == 2 and "usage:" in done.stderr


def test_comfyui_finds_the_synced_models_through_extra_model_paths() -> None:
    config = yaml.safe_load((ROOT / "mlserver" / "provision" / "extra_model_paths.yaml").read_text())
    studio = config["studio"]
    assert studio["base_path"] == "/var/lib/studio/models/"
    assert {studio[k] for k in ("checkpoints", "loras", "controlnet")} == {
        "checkpoints/",
        "loras/",
        "controlnet/",
    }
    folders = {
        line.split('"')[1]
        for line in (ROOT / "mlserver" / "models.toml").read_text().splitlines()
        if line.startswith("folder =")
    }
    assert folders <= set(studio)
