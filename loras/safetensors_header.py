"""Read and check a `.safetensors` header without loading any tensor.

Layout: 8 bytes little-endian header length N, N bytes of JSON (`name -> {dtype, shape, data_offsets}`
plus an optional `__metadata__` map of strings), then the tensor bytes, contiguous, offsets relative to
byte 8 + N. A truncated upload, trailing garbage or a pickle `.ckpt` renamed `.safetensors` is caught
here with a message that says which, before safetensors' terser errors.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


class HeaderError(ValueError):
    """The file is not a complete, well-formed safetensors file; `code` says how."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Header:
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str] | None
    data_start: int  # 8 + N
    data_bytes: int  # what the file holds after the header

    @property
    def tensor_bytes(self) -> int:
        """What the header says the data section holds."""
        return max((t.end for t in self.tensors.values()), default=0)


def _entry(name: str, raw: Any) -> TensorEntry:
    try:
        dtype, shape, (begin, end) = raw["dtype"], raw["shape"], raw["data_offsets"]
        entry = TensorEntry(name, str(dtype), tuple(int(d) for d in shape), int(begin), int(end))
    except (KeyError, TypeError, ValueError) as exc:
        raise HeaderError("bad_header", f"tensor {name!r}: malformed header entry {raw!r} ({exc})") from None
    if entry.dtype not in DTYPE_BYTES:
        raise HeaderError("bad_header", f"tensor {name!r}: unknown dtype {entry.dtype!r}")
    return entry


def _metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise HeaderError("bad_metadata", "__metadata__ must map strings to strings")
    return {str(k): v for k, v in raw.items()}


def _read_json(path: Path, size: int) -> tuple[dict[str, Any], int]:
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise HeaderError("not_safetensors", f"{size} bytes: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", prefix)
        if n == 0 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise HeaderError(
                "not_safetensors",
                f"header length {n} does not fit a {size}-byte file: not a safetensors file "
                "(a pickled .ckpt/.pt?) or cut inside its header",
            )
        raw = f.read(n)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError("bad_header", f"header is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise HeaderError("bad_header", "header is not a JSON object")
    return obj, 8 + n


def read_header(path: Path) -> Header:
    """Parse the header; raise HeaderError when the file cannot be a safetensors file."""
    size = path.stat().st_size
    obj, data_start = _read_json(path, size)
    metadata = _metadata(obj.pop("__metadata__", None))
    tensors = {name: _entry(name, raw) for name, raw in obj.items()}
    return Header(tensors, metadata, data_start, size - data_start)


def check_data_section(header: Header) -> None:
    """Offsets must tile the data section exactly: no gap, no overlap, no missing or extra byte."""
    cursor = 0
    for t in sorted(header.tensors.values(), key=lambda t: (t.begin, t.end)):
        if t.end - t.begin != t.numel * DTYPE_BYTES[t.dtype]:
            raise HeaderError(
                "bad_header", f"tensor {t.name!r}: {t.end - t.begin} bytes for {t.shape} {t.dtype}"
            )
        if t.begin != cursor:
            raise HeaderError("bad_header", f"tensor {t.name!r} starts at {t.begin}, expected {cursor}")
        cursor = t.end
    if cursor > header.data_bytes:
        raise HeaderError(
            "truncated",
            f"truncated: the header describes {cursor} bytes of tensors but the file holds "
            f"{header.data_bytes} (an interrupted upload or download?)",
        )
    if cursor < header.data_bytes:
        raise HeaderError(
            "trailing_bytes", f"{header.data_bytes - cursor} unexpected bytes after the tensors"
        )
