"""The emulator's directories in ComfyUI's layout: models (with the project's names served when a folder is
empty), input, output, temp; path guards as ComfyUI's (reference §1.7, §1.8, §6.1)."""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
import tomllib
from pathlib import Path

from contract.styles import load_manifest

MODEL_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
FOLDER_KEYS = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
]
MODEL_DIRS = {
    "text_encoders": ["text_encoders", "clip"],
    "diffusion_models": ["unet", "diffusion_models"],
    "controlnet": ["controlnet", "t2i_adapter"],
}
BASE_MODELS = Path(__file__).resolve().parents[1] / "models.toml"


def project_models() -> dict[str, list[str]]:
    """The model names this project uses, served when the models folders hold nothing."""
    with BASE_MODELS.open("rb") as f:
        base = tomllib.load(f)["models"]
    names: dict[str, list[str]] = {}
    for entry in base.values():
        names.setdefault(entry["folder"], []).append(entry["file"])
    names["loras"] = load_manifest().lora_files
    return {k: sorted(v) for k, v in names.items()}


class Folders:
    def __init__(
        self,
        base: Path | None,
        output: Path | None = None,
        input_: Path | None = None,
        temp: Path | None = None,
    ) -> None:
        self._tmp = None if base else tempfile.mkdtemp(prefix="comfy-emulator-")
        self.base = (base or Path(self._tmp or ".")).resolve()
        self.output = (output or self.base / "output").resolve()
        self.input = (input_ or self.base / "input").resolve()
        self.temp = ((temp / "temp") if temp else self.base / "temp").resolve()
        self.models = self.base / "models"
        for d in (
            self.output,
            self.input,
            self.models / "checkpoints",
            self.models / "loras",
            self.models / "controlnet",
        ):
            d.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.temp, ignore_errors=True)  # ComfyUI empties temp at start
        self.temp.mkdir(parents=True, exist_ok=True)
        self.virtual = project_models()

    def dirs(self, key: str) -> list[Path]:
        dirs = [self.models / d for d in MODEL_DIRS.get(key, [key])]
        if key in ("checkpoints", "loras", "vae", "diffusion_models"):
            dirs.append(self.output / key)
        if key == "text_encoders":
            dirs.append(self.output / "clip")
        return dirs

    def list_models(self, key: str) -> list[str]:
        found: set[str] = set()
        for d in self.dirs(key):
            if not d.is_dir():
                continue
            for root, _, files in os.walk(d, followlinks=True):
                for name in files:
                    if key == "classifiers" and "." in name:
                        continue
                    if key in ("configs",) and not name.endswith(".yaml"):
                        continue
                    if (
                        key not in ("classifiers", "configs", "custom_nodes")
                        and Path(name).suffix not in MODEL_EXTENSIONS
                    ):
                        continue
                    found.add((Path(root) / name).relative_to(d).as_posix())
        if not found and key in self.virtual and not any(self._has_files(d) for d in self.dirs(key)):
            return list(self.virtual[key])
        return sorted(found)

    @staticmethod
    def _has_files(d: Path) -> bool:
        return d.is_dir() and any(p.is_file() for p in d.rglob("*"))

    def model_exists(self, key: str, name: str) -> bool:
        return name in self.list_models(key)

    def model_path(self, key: str, name: str) -> Path | None:
        """The file a listed name stands for; None for the project's names served from empty folders."""
        for d in self.dirs(key):
            if (d / name).is_file():
                return d / name
        return None

    def input_images(self) -> list[str]:
        out = []
        for p in sorted(self.input.iterdir()):
            if p.is_file() and (mimetypes.guess_type(p.name)[0] or "").startswith("image/"):
                out.append(p.name)
        return out

    def type_dir(self, type_: str) -> Path | None:
        return {"output": self.output, "input": self.input, "temp": self.temp}.get(type_)

    def annotated(self, name: str) -> Path:
        """`room.png [output]` style names, relative to input by default (LoadImage)."""
        base = self.input
        for suffix, d in ((" [output]", self.output), (" [input]", self.input), (" [temp]", self.temp)):
            if name.endswith(suffix):
                name, base = name[: -len(suffix)], d
        return base / name

    def input_exists(self, name: str) -> bool:
        return self.annotated(name).is_file()

    def cleanup(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
