"""What ComfyUI does to a model file before it has a model: `comfy.utils.load_torch_file` opens a
`.safetensors`/`.sft` file with safetensors, whose header checks fail a 0-byte, cut or foreign file with
`safetensors._safetensors_rust.SafetensorError` ("Error while deserializing header: ..."). The loader node
then ends the prompt with an execution_error (reference §4.6).

The checks and their wording are safetensors' own `read_metadata`, as of 0.6 (the releases ComfyUI's
`safetensors>=0.4.2` installs today; older ones printed Rust names such as `HeaderTooLarge`, which ComfyUI
re-raises as a ValueError with advice, so with 0.6 and later that ValueError never appears): an 8-byte
little-endian header length N, N bytes of UTF-8 JSON, tensors that tile the rest of the file exactly. Only
the header is read, so a stand-in file a few bytes long loads as well as a real checkpoint. The wording of
a JSON syntax error is Python's, not serde's; the prefix is the same. Pickle formats (`.ckpt`, `.pt`) are
not checked: ComfyUI hands those to torch.load, which the emulator does not imitate.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100_000_000
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6,
    "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "I64": 64, "U64": 64, "F64": 64,
}  # fmt: skip
JSON_KINDS = {list: "sequence", str: "string", int: "integer", float: "floating point", bool: "boolean"}


class SafetensorError(Exception):
    """Stands in for safetensors' exception class, whose qualified name clients see as exception_type."""


SafetensorError.__module__ = "safetensors._safetensors_rust"


def _fail(detail: str) -> SafetensorError:
    return SafetensorError(f"Error while deserializing header: {detail}")


def _header_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # in the words of Rust's Utf8Error
        if exc.reason == "unexpected end of data":
            raise _fail(
                f"invalid UTF-8 in header: incomplete utf-8 byte sequence from index {exc.start}"
            ) from None
        size = exc.end - exc.start
        raise _fail(
            f"invalid UTF-8 in header: invalid utf-8 sequence of {size} bytes from index {exc.start}"
        ) from None


def _header(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(_header_text(raw))
    except json.JSONDecodeError as exc:
        raise _fail(f"invalid JSON in header: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(obj, dict):
        kind = JSON_KINDS.get(type(obj), type(obj).__name__)
        raise _fail(
            f"invalid JSON in header: invalid type: {kind}, expected struct HashMetadata at line 1 column 0"
        )
    return obj


def _tensor(name: str, raw: Any) -> tuple[int, int, int]:
    """(begin, end, bytes its shape and dtype need) of one header entry."""
    try:
        dtype, shape, (begin, end) = raw["dtype"], raw["shape"], raw["data_offsets"]
        bits = DTYPE_BITS[dtype] * math.prod(int(d) for d in shape)
        return int(begin), int(end), bits // 8 if bits % 8 == 0 else -1
    except (KeyError, TypeError, ValueError):
        raise _fail(f"invalid JSON in header: bad tensor entry for `{name}`") from None


def _data_bytes(header: dict[str, Any]) -> int:
    """Where the last tensor ends; tensors must follow each other with no gap, as safetensors checks."""
    entries = sorted(
        ((*_tensor(name, raw), name) for name, raw in header.items() if name != "__metadata__"),
        key=lambda e: (e[0], e[1]),
    )
    cursor = 0
    for begin, end, needed, name in entries:
        if begin != cursor or end < begin:
            raise _fail(f"invalid offset for tensor `{name}`")
        if end - begin != needed:
            raise _fail("invalid shape, data type, or offset for tensor")
        cursor = end
    return cursor


def check_safetensors(path: Path) -> None:
    """Raise safetensors' error when `path` could not be opened as a safetensors file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _fail("header too small")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_BYTES:
            raise _fail("header too large")
        if 8 + n > size:
            raise _fail("invalid header length")
        raw = f.read(n)
    if 8 + n + _data_bytes(_header(raw)) != size:
        raise _fail("incomplete metadata, file not fully covered")


def check_weights(path: Path) -> None:
    """What loading `path` would raise before any tensor is built (nothing for formats not checked)."""
    if path.name.lower().endswith(SAFETENSORS_SUFFIXES):
        check_safetensors(path)
