"""The style manifest writer: `loras/styles.toml` back to TOML, for `publish.py` and its rollback.

Reading is the contract's (`contract/styles.py`); only the LoRA pipeline writes the file.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contract.files import atomic_write_text
from contract.styles import Manifest, ManifestError, Style, parse_manifest

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
    "# The style manifest: the one place a style is defined (see contract/styles.py).\n"
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
