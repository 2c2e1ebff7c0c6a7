"""The systemd units: `systemd-analyze verify` clean, hardened, and wired as the deployment needs."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
SERVICES = [
    "studio-backend",
    "studio-dispatcher",
    "studio-ui",
    "studio-model-sync",
    "studio-model-refresh",
    "comfyui@8188",
]
# Exposure scores from `systemd-analyze security` (0 = locked down, 10 = unsafe). ComfyUI keeps the GPU
# devices and writable-executable memory (CUDA), so it gets a little more room.
MAX_EXPOSURE = {"comfyui@8188": 3.0}
DEFAULT_MAX_EXPOSURE = 2.5
VENV_BIN = Path(sys.executable).parent


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: `make test` (or .ci/run) installs Debian's systemd package")
    return exe


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The units with the host's install paths pointed at executables of this machine (verify checks
    that ExecStart binaries exist); nothing else is changed."""
    for unit in UNITS.iterdir():
        text = unit.read_text()
        text = text.replace("/opt/studio/.venv/bin/python", sys.executable)
        text = text.replace("/opt/comfyui/.venv/bin/python", sys.executable)
        text = text.replace("/opt/studio/.venv/bin/", f"{VENV_BIN}/")
        (tmp_path / unit.name).write_text(text)
    return tmp_path


def analyze(unit_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(
        [systemd_analyze(), *args], capture_output=True, text=True, env=env, cwd=unit_dir, timeout=60
    )


def parse(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


@pytest.mark.parametrize("unit", [*SERVICES, "studio.target", "studio-model-refresh.timer"])
def test_every_unit_verifies_without_a_single_message(unit_dir: Path, unit: str) -> None:
    name = unit if "." in unit else f"{unit}.service"
    done = analyze(unit_dir, "verify", name)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # syntax problems are printed but exit 0


def test_verify_catches_a_broken_unit(unit_dir: Path) -> None:
    unit = unit_dir / "studio-ui.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "restart specifier" in analyze(unit_dir, "verify", "studio-ui.service").stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_every_service_is_hardened(unit_dir: Path, unit: str) -> None:
    done = analyze(unit_dir, "security", "--offline=true", f"{unit}.service")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE.get(unit, DEFAULT_MAX_EXPOSURE), done.stdout


@pytest.mark.parametrize("name", [p.name for p in sorted(UNITS.glob("*.service"))])
def test_services_run_as_studio_from_the_env_file_and_restart_on_failure(name: str) -> None:
    service = parse(name)["Service"]
    assert service["User"] == "studio" and service["Group"] == "studio"
    assert service["EnvironmentFile"] == "/etc/studio/studio.env"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    assert parse(name)["Install"]["WantedBy"] == "studio.target"


def test_comfyui_instances_have_their_own_folders_share_models_and_wait_for_the_sync() -> None:
    unit = parse("comfyui@.service")
    start = unit["Service"]["ExecStart"]
    assert "--port %i" in start
    for folder in ("input", "output", "temp"):
        assert f"--{folder}-directory /var/lib/studio/comfyui/%i/{folder}" in start
    assert "--extra-model-paths-config /opt/studio/mlserver/provision/extra_model_paths.yaml" in start
    assert unit["Service"]["ReadOnlyPaths"] == "/var/lib/studio/models"
    assert "studio-model-sync.service" in unit["Unit"]["Requires"].split()
    assert "studio-model-sync.service" in unit["Unit"]["After"].split()
    sync = parse("studio-model-sync.service")["Service"]
    assert sync["Type"] == "oneshot" and sync["RemainAfterExit"] == "yes"
    assert "-m mlserver.model_sync" in sync["ExecStart"] and "--marker" in sync["ExecStart"]


def test_the_api_migrates_before_it_serves_and_the_dispatcher_stops_gracefully() -> None:
    api = parse("studio-backend.service")["Service"]
    assert api["ExecStartPre"].endswith("-m backend.prestart")
    assert "gunicorn -c /opt/studio/backend/gunicorn.conf.py" in api["ExecStart"]
    dispatcher = parse("studio-dispatcher.service")
    assert dispatcher["Service"]["ExecStart"].endswith("-m backend.dispatcher")
    assert dispatcher["Service"]["KillSignal"] == "SIGTERM"
    assert int(dispatcher["Service"]["TimeoutStopSec"]) >= 60
    assert "studio-backend.service" in dispatcher["Unit"]["After"].split()
    ui = parse("studio-ui.service")["Service"]
    assert "streamlit run /opt/studio/frontend/app.py --server.port 8501" in ui["ExecStart"]
    # The sign-in secrets file is written before Streamlit starts, where it reads it (~/.streamlit).
    assert ui["ExecStartPre"].endswith("-m frontend.auth_secrets")
    assert ui["Environment"] == "HOME=/var/lib/studio/ui" and ui["StateDirectory"] == "studio/ui"


def test_comfyui_sends_live_previews_on_the_ml_host_and_under_make_run() -> None:
    start = parse("comfyui@.service")["Service"]["ExecStart"]
    assert "--preview-method latent2rgb" in start  # no model file needed, unlike taesd
    lines = (ROOT / "Procfile").read_text().splitlines()
    procfile = dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))
    for name in ("comfy-text", "comfy-sketch"):
        assert "--preview-method auto" in procfile[name], name
