"""The style manifest reader: `loras/styles.toml` loaded, validated and turned into prompts.

Every tier reads styles through this module: the API (`/api/styles`, job validation), graph building,
the ML server's model sync and emulator, and the LoRA pipeline, whose `loras/manifest_writer.py` rewrites
the file. A style is data: adding a `[styles.<id>]` table is all a new style needs.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# The data stays with the pipeline that publishes it; $STYLE_MANIFEST points elsewhere.
MANIFEST_PATH = Path(__file__).resolve().parents[1] / "loras" / "styles.toml"
STYLE_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """The manifest is unreadable or a style in it is malformed."""


@dataclass(frozen=True)
class PreviousVersion:
    version: str
    lora_file: str
    sha256: str
    size_bytes: int
    s3_key: str


@dataclass(frozen=True)
class Style:
    id: str
    display_name: str
    description: str
    lora_file: str
    sha256: str
    size_bytes: int
    version: str
    s3_key: str
    trigger_words: tuple[str, ...]
    strength_model: float
    strength_clip: float
    prompt_template: str
    negative_template: str
    preview_image: str
    previous: tuple[PreviousVersion, ...] = field(default=())

    @property
    def has_lora(self) -> bool:
        return bool(self.lora_file)

    @property
    def is_published(self) -> bool:
        """True when the LoRA file is pinned by checksum (or the style needs no LoRA)."""
        return not self.has_lora or bool(SHA256_RE.match(self.sha256))

    @property
    def trigger(self) -> str:
        return ", ".join(self.trigger_words)

    def render_prompt(self, prompt: str) -> str:
        text = self.prompt_template.replace("{trigger}", self.trigger).replace("{prompt}", prompt.strip())
        return _tidy(text)

    def render_negative(self, negative: str) -> str:
        return _tidy(self.negative_template.replace("{negative}", negative.strip()))


@dataclass(frozen=True)
class Manifest:
    styles: Mapping[str, Style]
    default_style: str
    path: Path

    def get(self, style_id: str) -> Style:
        try:
            return self.styles[style_id]
        except KeyError:
            raise ManifestError(f"unknown style {style_id!r}") from None

    @property
    def ids(self) -> list[str]:
        return list(self.styles)

    @property
    def lora_files(self) -> list[str]:
        return sorted({s.lora_file for s in self.styles.values() if s.has_lora})

    def preview_path(self, style_id: str) -> Path:
        return (self.path.parent / self.get(style_id).preview_image).resolve()


def _tidy(text: str) -> str:
    """Drop the empty items an empty trigger or negative leaves behind (", , x" -> "x")."""
    parts = [p.strip() for p in text.split(",")]
    return ", ".join(p for p in parts if p)


def _style_from_table(style_id: str, table: Mapping[str, Any]) -> Style:
    if not STYLE_ID_RE.match(style_id):
        raise ManifestError(f"style id {style_id!r} must be lower-case letters, digits or _")
    try:
        previous = tuple(PreviousVersion(**p) for p in table.get("previous", []))
        style = Style(
            id=style_id,
            display_name=str(table["display_name"]),
            description=str(table["description"]),
            lora_file=str(table.get("lora_file", "")),
            sha256=str(table.get("sha256", "")),
            size_bytes=int(table.get("size_bytes", 0)),
            version=str(table["version"]),
            s3_key=str(table.get("s3_key", "")),
            trigger_words=tuple(str(w) for w in table.get("trigger_words", [])),
            strength_model=float(table.get("strength_model", 1.0)),
            strength_clip=float(table.get("strength_clip", 1.0)),
            prompt_template=str(table.get("prompt_template", "{trigger}, {prompt}")),
            negative_template=str(table.get("negative_template", "{negative}")),
            preview_image=str(table.get("preview_image", "")),
            previous=previous,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"style {style_id!r}: {exc}") from exc
    if "{prompt}" not in style.prompt_template:
        raise ManifestError(f"style {style_id!r}: prompt_template must contain {{prompt}}")
    if style.has_lora and ("/" in style.lora_file or "\\" in style.lora_file or ".." in style.lora_file):
        raise ManifestError(f"style {style_id!r}: lora_file must be a bare file name")
    if style.sha256 and not SHA256_RE.match(style.sha256):
        raise ManifestError(f"style {style_id!r}: sha256 must be 64 lower-case hex digits")
    return style


def parse_manifest(data: Mapping[str, Any], path: Path) -> Manifest:
    tables = data.get("styles")
    if not isinstance(tables, dict) or not tables:
        raise ManifestError(f"{path}: no [styles.<id>] tables")
    styles = {sid: _style_from_table(sid, t) for sid, t in tables.items()}
    default = str(data.get("default_style", next(iter(styles))))
    if default not in styles:
        raise ManifestError(f"{path}: default_style {default!r} is not a style")
    return Manifest(styles=styles, default_style=default, path=path)


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Load and validate the manifest (default: `loras/styles.toml`, or $STYLE_MANIFEST)."""
    p = Path(path or os.environ.get("STYLE_MANIFEST") or MANIFEST_PATH)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"cannot read style manifest {p}: {exc}") from exc
    return parse_manifest(data, p)


def with_style(manifest: Manifest, style: Style) -> Manifest:
    """A copy of the manifest with one style added or replaced."""
    styles = dict(manifest.styles)
    styles[style.id] = style
    return replace(manifest, styles=styles)
