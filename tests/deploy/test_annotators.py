"""The preprocessors' weights offline: synced files linked where comfyui_controlnet_aux looks, and every place
that starts ComfyUI (the systemd unit, the SageMaker `serve`) sets the offline environment first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contract.model_manifest import ModelEntry, load_models_toml
from mlserver.provision.annotators import LAYOUT, LayoutError, lay_out, links, main

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "comfyui@.service"
SERVE = ROOT / "mlserver" / "sagemaker" / "serve"


def entry(file: str, folder: str = "annotators") -> ModelEntry:
    return ModelEntry(file, folder, file, f"models/{folder}/{file}", "", 0, "apache-2.0")


def test_every_annotator_of_the_manifest_has_its_place_in_the_packs_layout() -> None:
    annotators = [e for e in load_models_toml() if e.folder == "annotators"]
    assert {e.file for e in annotators} == set(LAYOUT)
    pairs = links(load_models_toml(), Path("/m"), Path("/c"))
    assert sorted((str(link), str(target)) for link, target in pairs) == [
        (
            "/c/depth-anything/Depth-Anything-V2-Small/depth_anything_v2_vits.pth",
            "/m/annotators/depth_anything_v2_vits.pth",
        ),
        ("/c/lllyasviel/Annotators/mlsd_large_512_fp32.pth", "/m/annotators/mlsd_large_512_fp32.pth"),
    ]


def test_an_annotator_the_pack_would_not_find_is_refused() -> None:
    with pytest.raises(LayoutError, match=r"depth_anything_v2_vitl\.pth has no known place"):
        links([entry("depth_anything_v2_vitl.pth")], Path("/m"), Path("/c"))
    assert links([entry("x.safetensors", "checkpoints")], Path("/m"), Path("/c")) == []


def test_the_links_are_made_again_idempotently_and_a_missing_file_stops_the_start(tmp_path: Path) -> None:
    models, ckpts = tmp_path / "models", tmp_path / "ckpts"
    (models / "annotators").mkdir(parents=True)
    pairs = links(load_models_toml(), models, ckpts)
    assert lay_out(pairs) == [f"{t} is missing (model sync writes it)" for _, t in pairs]
    assert not ckpts.exists()  # nothing half-made
    for _, target in pairs:
        target.write_bytes(b"weights")
    assert lay_out(pairs) == [] and lay_out(pairs) == []
    for link, target in pairs:
        assert link.is_symlink() and link.resolve() == target.resolve() and link.read_bytes() == b"weights"
    stale = pairs[0][0]
    stale.unlink()
    stale.symlink_to(tmp_path / "elsewhere")
    assert lay_out(pairs) == [] and stale.resolve() == pairs[0][1].resolve()
    assert main(["--models-dir", str(models), "--ckpts-dir", str(ckpts)]) == 0
    pairs[1][1].unlink()
    done = subprocess.run(
        [sys.executable, "-m", "mlserver.provision.annotators", "--models-dir", str(models),
         "--ckpts-dir", str(ckpts)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "is missing (model sync writes it)" in done.stderr


def test_comfyui_starts_offline_with_the_annotators_in_place() -> None:
    text = UNIT.read_text()
    environment = [line.removeprefix("Environment=") for line in text.splitlines() if line.startswith("Env")]
    env = dict(pair.split("=", 1) for line in environment for pair in line.split())
    assert env["AUX_ANNOTATOR_CKPTS_PATH"] == "/var/lib/studio/comfyui/%i/annotators"
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["U2NET_HOME"] == "/var/lib/studio/models/rembg"
    pre = [line for line in text.splitlines() if line.startswith("ExecStartPre=")]
    assert pre[-1] == (
        "ExecStartPre=/opt/studio/.venv/bin/python -m mlserver.provision.annotators "
        "--models-dir /var/lib/studio/models --ckpts-dir /var/lib/studio/comfyui/%i/annotators"
    )
    serve = SERVE.read_text()
    assert 'export AUX_ANNOTATOR_CKPTS_PATH="$STATE_DIR/annotators" U2NET_HOME="$MODELS/rembg"' in serve
    assert "export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1" in serve
    assert serve.index("    annotators\n") < serve.index('exec "$COMFY_PYTHON" main.py')
