"""The model manifest: every model file ComfyUI may load, pinned by sha256, size and licence.

Three sources, one list of `ModelEntry` (one file at `<models-dir>/<folder>/<file>`, fetched from `s3_key`):
- `mlserver/models.toml`: the base models (checkpoint, ControlNet), kept in the repository;
- the style manifest's LoRA files (`loras/styles.toml`, through `contract.styles`);
- the *added* manifest, `models/manifest.added.json` in the models bucket: the models leads add through the
  API (`POST /api/models`), written by the backend from its `model_files` table, read by model sync on the
  ML host (periodically) and in the SageMaker container (at start), so an added model needs no redeploy.

Every source is checked the same way: bare folder and file names, a 64-hex sha256, a size. The backend reads
the same functions to show what is pinned; model sync reads them to know what to fetch and verify.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contract.styles import SHA256_RE, Manifest, ManifestError

MODELS_MANIFEST = Path(__file__).resolve().parents[1] / "mlserver" / "models.toml"
ADDED_MANIFEST_KEY = "models/manifest.added.json"
ADDED_SCHEMA_VERSION = 1
# A ComfyUI models folder (`folder_paths` keys, and whatever a node pack registers).
FOLDER_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_FILE_NAME = 200
# ComfyUI 0.3.64's model folders (`folder_paths.folder_names_and_paths`, less configs and custom_nodes);
# a node pack adds its own (ipadapter, ...), which an instance's `GET /models` lists.
COMFYUI_FOLDERS = (
    "audio_encoders", "checkpoints", "classifiers", "clip_vision", "controlnet", "diffusers",
    "diffusion_models", "embeddings", "gligen", "hypernetworks", "loras", "model_patches", "photomaker",
    "style_models", "text_encoders", "upscale_models", "vae", "vae_approx",
)  # fmt: skip
LICENCE_MAX = 100


@dataclass(frozen=True)
class ModelEntry:
    """One file ComfyUI needs: where it lives in S3 and in the models folder, and what it must hash to."""

    name: str
    folder: str
    file: str
    s3_key: str
    sha256: str
    size_bytes: int
    licence: str = ""
    source: str = "base"  # base (models.toml), style (a style's LoRA), added (the added manifest)

    @property
    def is_pinned(self) -> bool:
        return bool(SHA256_RE.match(self.sha256))

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.folder / self.file


def is_bare_name(name: str) -> bool:
    """A file or folder name without a path: no separator, not `.` or `..`, no control character."""
    return (
        bool(name)
        and len(name) <= MAX_FILE_NAME
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and all(ch.isprintable() for ch in name)
    )


def _entry(name: str, table: Mapping[str, Any], source: str) -> ModelEntry:
    try:
        entry = ModelEntry(
            name,
            str(table["folder"]),
            str(table["file"]),
            str(table["s3_key"]),
            str(table.get("sha256", "")),
            int(table.get("size_bytes", 0)),
            str(table.get("licence", "")),
            source,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"model {name!r} lacks or mistypes {exc}") from exc
    if not (is_bare_name(entry.folder) and is_bare_name(entry.file)):
        raise ManifestError(f"model {name!r}: folder and file must be bare names")
    return entry


def parse_models_toml(text: str) -> list[ModelEntry]:
    """The base models of a `models.toml` text (ManifestError when malformed)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(str(exc)) from exc
    return [_entry(n, t, "base") for n, t in sorted((data.get("models") or {}).items())]


def load_models_toml(path: Path | None = None) -> list[ModelEntry]:
    path = path or MODELS_MANIFEST
    try:
        return parse_models_toml(path.read_text())
    except (OSError, ManifestError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc


def style_entries(styles: Manifest) -> list[ModelEntry]:
    """Every style's LoRA file as a model entry of the `loras` folder."""
    return [
        ModelEntry(f"lora:{s.id}", "loras", s.lora_file, s.s3_key, s.sha256, s.size_bytes, "", "style")
        for s in styles.styles.values()
        if s.has_lora
    ]


def added_name(folder: str, file: str) -> str:
    return f"added:{folder}/{file}"


def _added_entry(item: Any) -> ModelEntry:
    if not isinstance(item, dict):
        raise ManifestError("every added model must be an object")
    entry = _entry(added_name(str(item.get("folder")), str(item.get("file"))), item, "added")
    if not FOLDER_RE.match(entry.folder):
        raise ManifestError(f"{entry.name}: folder {entry.folder!r} is not a models folder name")
    if not entry.is_pinned or entry.size_bytes <= 0:
        raise ManifestError(f"{entry.name}: an added model must pin its sha256 and size")
    if not entry.licence.strip():
        raise ManifestError(f"{entry.name}: an added model must name its licence")
    if not entry.s3_key or entry.s3_key.startswith("/") or ".." in entry.s3_key.split("/"):
        raise ManifestError(f"{entry.name}: s3_key {entry.s3_key!r} is not a key in the bucket")
    return entry


def parse_added(text: str | bytes) -> list[ModelEntry]:
    """The added manifest's entries, each checked as strictly as the backend checked it when added."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"the added manifest is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema_version") != ADDED_SCHEMA_VERSION:
        raise ManifestError(
            f"the added manifest must be an object with schema_version {ADDED_SCHEMA_VERSION}"
        )
    items = doc.get("models")
    if not isinstance(items, list):
        raise ManifestError("the added manifest has no `models` list")
    return unique_entries(_added_entry(item) for item in items)


def render_added(entries: Sequence[ModelEntry]) -> str:
    """The added manifest's JSON text for these entries (sorted, so equal sets give equal bytes)."""
    fields = ("folder", "file", "s3_key", "sha256", "size_bytes", "licence")
    models = [
        {k: v for k, v in asdict(e).items() if k in fields}
        for e in sorted(entries, key=lambda e: (e.folder, e.file))
    ]
    return json.dumps({"schema_version": ADDED_SCHEMA_VERSION, "models": models}, indent=2) + "\n"


def unique_entries(entries: Iterable[ModelEntry]) -> list[ModelEntry]:
    """One entry per file (two styles may share a LoRA); two different files at one path is an error.

    Two workers writing the same partial file would corrupt each other, so duplicates never reach the pool.
    """
    by_path: dict[tuple[str, str], ModelEntry] = {}
    for entry in entries:
        seen = by_path.setdefault((entry.folder, entry.file), entry)
        if (seen.sha256, seen.s3_key) != (entry.sha256, entry.s3_key):
            raise ManifestError(
                f"{seen.name} and {entry.name} both want {entry.folder}/{entry.file} with different contents"
            )
    return list(by_path.values())
