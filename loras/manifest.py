"""The style manifest (`loras/styles.toml`): load, validate and rewrite it.

Every tier reads styles through this module: the backend (`/api/styles`, graph building), the ML
server's model sync and the LoRA pipeline (`publish.py` rewrites it). A style is data: adding a
`[styles.<id>]` table is all a new style needs.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loras.files import atomic_write_text

MANIFEST_PATH = Path(__file__).with_name("styles.toml")
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


# --- Writing (publish.py, rollback): the manifest back to TOML --------------------------------------------

STYLE_FIELDS = (
    "display_name",
    "description",
    "lora_file",
    "sha256",
    "size_bytes",
    "version",
    "s3_key",
    "trigger_words",
    "strength_model",
    "strength_clip",
    "prompt_template",
    "negative_template",
    "preview_image",
)
PREVIOUS_FIELDS = ("version", "lora_file", "sha256", "size_bytes", "s3_key")
DEFAULT_HEADER = (
    "# The style manifest: the one place a style is defined (see loras/manifest.py).\n"
    "# Rewritten by `python -m loras.publish`; comments other than this header are not kept.\n"
)
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY_RE.match(key) else _toml_string(key)


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string, except that TOML also wants DEL escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        if any(isinstance(v, Mapping) for v in value):
            return "[\n" + "".join(f"  {_toml_value(v)},\n" for v in value) + "]"
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ManifestError(f"cannot write {type(value).__name__} value {value!r} to the manifest")


def _style_table(style: Style, extra: Mapping[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {name: getattr(style, name) for name in STYLE_FIELDS}
    table["trigger_words"] = list(style.trigger_words)
    table.update({k: v for k, v in extra.items() if k not in table and k != "previous"})
    table["previous"] = [{name: getattr(p, name) for name in PREVIOUS_FIELDS} for p in style.previous]
    return table


def dumps_manifest(
    manifest: Manifest,
    header: str = DEFAULT_HEADER,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The manifest as TOML: `header` (comment lines), top-level keys, then one table per style.

    `extra` is the raw data of the file being replaced: keys this module does not model (top-level or
    per style) are written back unchanged, so a field added by another tier survives a publish.
    """
    extra = extra or {}
    top: dict[str, Any] = {"schema_version": extra.get("schema_version", 1)}
    top.update({k: v for k, v in extra.items() if k not in ("styles", "default_style") and k not in top})
    top["default_style"] = manifest.default_style
    lines = [header.rstrip("\n"), ""] if header.strip() else []
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in top.items()]
    raw_styles = extra.get("styles", {})
    for style in manifest.styles.values():
        table = _style_table(style, raw_styles.get(style.id, {}))
        lines += ["", f"[styles.{_toml_key(style.id)}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def manifest_header(text: str) -> str:
    """The leading comment block of a manifest file (what `save_manifest` keeps)."""
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    return "\n".join(header) + "\n" if header else ""


def save_manifest(manifest: Manifest, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the manifest atomically (default: where it was loaded from).

    The leading comment block and any keys not modelled here are taken from the file being replaced;
    the result is parsed back before it replaces anything.
    """
    target = Path(path) if path is not None else manifest.path
    header, extra = DEFAULT_HEADER, {}
    if target.exists():
        old_text = target.read_text(encoding="utf-8")
        header, extra = manifest_header(old_text) or DEFAULT_HEADER, tomllib.loads(old_text)
    text = dumps_manifest(manifest, header, extra)
    parse_manifest(tomllib.loads(text), target)
    atomic_write_text(target, text)
    return target
