"""train.py renders the sd-scripts command, checks the dataset, runs it only with --run; the notebook
lifecycle script is valid bash and installs idempotently (run here against stub git/conda/pip)."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from loras.train import TrainError, check_dataset, config_path, estimated_steps, load_config, main

LIFECYCLE = Path(__file__).resolve().parents[2] / "loras" / "notebook_lifecycle.sh"


def make_dataset(root: Path, folder: str = "10_indochine style", n: int = 3, size: int = 512) -> Path:
    subset = root / folder
    subset.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (size, size), (i, 0, 0)).save(subset / f"{i:04d}.png")
        (subset / f"{i:04d}.txt").write_text(f"indochine style, room {i}\n")
    return root


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# --- dataset check ----------------------------------------------------------------------------------------


def test_a_prepared_dataset_passes(tmp_path: Path) -> None:
    check = check_dataset(make_dataset(tmp_path / "ds"), "indochine style")
    assert (check.errors, check.warnings) == ([], [])
    assert [(s.repeats, s.class_tokens, s.images) for s in check.subsets] == [(10, "indochine style", 3)]
    config = {"train_batch_size": 2, "max_train_epochs": 10}
    assert estimated_steps(check, config) == 150  # ceil(3 images x 10 repeats / 2) x 10 epochs


def test_dataset_problems_are_named(tmp_path: Path) -> None:
    assert "does not exist" in check_dataset(tmp_path / "nowhere").errors[0]
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (512, 512)).save(tmp_path / "flat" / "a.png")
    assert "no <repeats>_<trigger> folder" in check_dataset(tmp_path / "flat").errors[0]

    root = make_dataset(tmp_path / "ds", n=2, size=640)
    (root / "10_indochine style" / "0001.txt").write_text("  \n")
    (root / "0_bad").mkdir()
    (root / "5_empty").mkdir()
    check = check_dataset(root, "minimalist style")
    assert any("1 images without a caption" in e for e in check.errors)
    assert any("5_empty: no images" in e for e in check.errors)
    assert any("not 512x512" in w for w in check.warnings)
    assert any("differ from the trigger" in w for w in check.warnings)
    assert any("0_bad" in w for w in check.warnings)


# --- command ----------------------------------------------------------------------------------------------


def test_the_command_is_rendered_for_the_notebook(tmp_path: Path, capsys) -> None:
    data = make_dataset(tmp_path / "ds")
    args = [
        "indochine",
        "--data-dir",
        str(data),
        "--base-model",
        "models/sd15.safetensors",
        "--version",
        "v2",
    ]
    assert main([*args, "--sd-scripts", "/opt/sd-scripts", "--", "--max_train_epochs", "2"]) == 0
    cmd = shlex.split(capsys.readouterr().out.strip())
    assert cmd[:2] == ["accelerate", "launch"]
    assert cmd[cmd.index("--mixed_precision") + 1] == "fp16"
    script = cmd.index("/opt/sd-scripts/train_network.py")
    args = cmd[script + 1 :]
    assert args[args.index("--config_file") + 1] == str(config_path("indochine"))
    assert args[args.index("--train_data_dir") + 1] == str(data)
    assert args[args.index("--pretrained_model_name_or_path") + 1] == "models/sd15.safetensors"
    assert args[args.index("--output_name") + 1] == "indochine_v2"
    assert args[-2:] == ["--max_train_epochs", "2"]


def test_a_bad_dataset_stops_before_any_command(tmp_path: Path, capsys) -> None:
    assert main(["indochine", "--data-dir", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().out == ""


def test_an_unknown_style_has_no_config(tmp_path: Path) -> None:
    assert main(["japandi", "--data-dir", str(make_dataset(tmp_path / "ds"))]) == 2


def test_configs_must_be_what_sd_scripts_reads(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[dataset]\nresolution = 512\n[network]\nnetwork_module = "networks.lora"\nnetwork_dim = 8\n'
        '[training]\noutput_name = "x"\nmixed_precision = "fp16"\n'
    )
    with pytest.raises(TrainError, match="resolution must be a string"):
        load_config(bad)
    bad.write_text('network_module = "networks.lycoris"\n')
    with pytest.raises(TrainError, match="lacks"):
        load_config(bad)


def test_run_needs_sd_scripts(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds")
    assert main(["indochine", "--data-dir", str(data), "--sd-scripts", str(tmp_path / "none"), "--run"]) == 2


def test_run_launches_accelerate_in_the_sd_scripts_checkout(tmp_path: Path, monkeypatch) -> None:
    sd_scripts = tmp_path / "sd-scripts"
    sd_scripts.mkdir()
    (sd_scripts / "train_network.py").write_text("# stand-in\n")
    calls = tmp_path / "calls.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "accelerate", f'#!/bin/sh\npwd > "{calls}"\necho "$@" >> "{calls}"\nexit 3\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    base = tmp_path / "sd15.safetensors"
    base.write_bytes(b"weights")
    data = make_dataset(tmp_path / "ds")

    rc = main(
        [
            "indochine",
            "--data-dir",
            str(data),
            "--base-model",
            str(base),
            "--sd-scripts",
            str(sd_scripts),
            "--run",
        ]
    )

    assert rc == 3  # accelerate's exit status is ours
    cwd, argv = calls.read_text().splitlines()
    assert cwd == str(sd_scripts.resolve())
    assert f"--train_data_dir {data.resolve()}" in argv and f"{sd_scripts.resolve()}/train_network.py" in argv


# --- SageMaker lifecycle script ---------------------------------------------------------------------------


def test_lifecycle_script_is_valid_bash_with_a_pinned_commit() -> None:
    subprocess.run(["bash", "-n", str(LIFECYCLE)], check=True)
    text = LIFECYCLE.read_text()
    assert re.search(r'SD_SCRIPTS_COMMIT="\$\{SD_SCRIPTS_COMMIT:-[0-9a-f]{40}\}"', text)
    assert len(text) < 16_384  # SageMaker's limit per lifecycle script
    assert "/home/ec2-user/SageMaker" in text and "nohup" in text


@pytest.fixture
def stub_tools(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """git, conda and the env's python as stubs that log their arguments; the environment to run with."""
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(
        bin_dir / "git",
        f"""#!/bin/bash
echo "git $*" >> "{log}"
if [ "$1" = clone ]; then dest="${{@: -1}}"; mkdir -p "$dest/.git"; touch "$dest/requirements.txt"; exit 0; fi
dir="$2"; shift 2
case "$1" in
  rev-parse) cat "$dir/.git/HEAD_SHA" 2>/dev/null || exit 128 ;;
  checkout) echo "${{@: -1}}" > "$dir/.git/HEAD_SHA" ;;
esac
""",
    )
    python_stub = f'#!/bin/bash\\necho "python $*" >> "{log}"\\n'
    executable(
        bin_dir / "conda",
        f"""#!/bin/bash
echo "conda $*" >> "{log}"
prefix="${{@: -3:1}}"
mkdir -p "$prefix/bin"
printf '{python_stub}' > "$prefix/bin/python"
chmod +x "$prefix/bin/python"
""",
    )
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PERSISTENT_DIR": str(tmp_path / "SageMaker"),
        "CONDA": str(bin_dir / "conda"),
        "CONDA_ENVS_DIR": str(tmp_path / "envs"),
        "NOTEBOOK_USER": subprocess.run(
            ["id", "-un"], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "KOHYA_FOREGROUND": "1",
    }
    (tmp_path / "envs").mkdir()
    return env, log


def run_lifecycle(env: dict[str, str], **extra: str) -> str:
    result = subprocess.run(
        ["bash", str(LIFECYCLE)], env={**env, **extra}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_lifecycle_installs_once_and_again_only_for_a_new_commit(stub_tools, tmp_path: Path) -> None:
    env, log = stub_tools
    home = tmp_path / "SageMaker" / "kohya"

    assert "installed" in run_lifecycle(env)
    first = log.read_text()
    assert "git clone" in first and "conda create" in first
    assert first.count("python -m pip install") == 2  # torch, then sd-scripts' requirements
    assert (home / "sd-scripts" / ".git" / "HEAD_SHA").read_text().strip() == re.search(
        r"SD_SCRIPTS_COMMIT:-([0-9a-f]{40})", LIFECYCLE.read_text()
    ).group(1)
    assert (tmp_path / "envs" / "kohya").resolve() == (home / "env").resolve()

    log.write_text("")
    assert "already installed" in run_lifecycle(env)
    assert "clone" not in log.read_text() and "pip" not in log.read_text()

    log.write_text("")
    run_lifecycle(env, SD_SCRIPTS_COMMIT="b" * 40)
    again = log.read_text()
    assert "clone" not in again and "conda create" not in again
    assert f"checkout --quiet --detach {'b' * 40}" in again and "pip install" in again
    assert [p.name for p in (home / "env").glob(".installed-*")] == [f".installed-{'b' * 40}"]
