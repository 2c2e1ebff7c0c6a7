"""The checks a model file's bytes must pass before anything loads it: safetensors' header and tensor
layout, and which formats are pickles (code that runs when loaded).

ComfyUI's `comfy.utils.load_torch_file` opens a `.safetensors`/`.sft` file with safetensors, whose header
checks fail a 0-byte, cut or foreign file with `safetensors._safetensors_rust.SafetensorError` ("Error while
deserializing header: ..."). The checks and their wording are safetensors' own `read_metadata`, as of 0.6:
an 8-byte little-endian header length N, N bytes of UTF-8 JSON, tensors that tile the rest of the file
exactly. Only the header is read, so a stand-in file a few bytes long passes as well as a real checkpoint.
The wording of a JSON syntax error is Python's, not serde's; the prefix is the same.

Two users: the emulator fails a loader node as ComfyUI would (`check_weights`), and the backend checks a
model a lead adds while its bytes stream in (`HeaderReader` on the first bytes, `check_size` at the end).
Each error carries a `reason` (a stable snake_case word) so the API can answer a precise 4xx.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100_000_000
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
# ComfyUI's `supported_pt_extensions` besides safetensors: torch.load / pickle formats.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl")
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6,
    "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "I64": 64, "U64": 64, "F64": 64,
}  # fmt: skip
JSON_KINDS = {list: "sequence", str: "string", int: "integer", float: "floating point", bool: "boolean"}


class SafetensorError(Exception):
    """Stands in for safetensors' exception class, whose qualified name clients see as exception_type.

    `reason`: not_safetensors, header_too_large, truncated_header, bad_tensor_entry, unknown_dtype,
    bad_layout, tensors_outside_file or trailing_bytes."""

    def __init__(self, message: str, reason: str = "not_safetensors") -> None:
        super().__init__(message)
        self.reason = reason


SafetensorError.__module__ = "safetensors._safetensors_rust"


def _fail(detail: str, reason: str = "not_safetensors") -> SafetensorError:
    return SafetensorError(f"Error while deserializing header: {detail}", reason)


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
    bad = _fail(f"invalid JSON in header: bad tensor entry for `{name}`", "bad_tensor_entry")
    try:
        dtype, shape, (begin, end) = raw["dtype"], raw["shape"], raw["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise bad from None
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        bad.reason = "unknown_dtype"
        raise bad
    try:
        bits = DTYPE_BITS[dtype] * math.prod(int(d) for d in shape)
        return int(begin), int(end), bits // 8 if bits % 8 == 0 else -1
    except (TypeError, ValueError):
        raise bad from None


def _data_bytes(header: dict[str, Any]) -> int:
    """Where the last tensor ends; tensors must follow each other with no gap, as safetensors checks."""
    entries = sorted(
        ((*_tensor(name, raw), name) for name, raw in header.items() if name != "__metadata__"),
        key=lambda e: (e[0], e[1]),
    )
    cursor = 0
    for begin, end, needed, name in entries:
        if begin != cursor or end < begin:
            raise _fail(f"invalid offset for tensor `{name}`", "bad_layout")
        if end - begin != needed:
            raise _fail("invalid shape, data type, or offset for tensor", "bad_layout")
        cursor = end
    return cursor


@dataclass(frozen=True)
class Layout:
    """What a valid header says of the file: its length, the tensors' bytes, how many tensors."""

    header_bytes: int
    data_bytes: int
    tensors: int

    @property
    def total_bytes(self) -> int:
        return 8 + self.header_bytes + self.data_bytes


def header_length(prefix: bytes) -> int:
    """N of the 8-byte prefix (at least 8 bytes of the file)."""
    if len(prefix) < 8:
        raise _fail("header too small", "truncated_header")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n > MAX_HEADER_BYTES:
        raise _fail("header too large", "header_too_large")
    return int(n)


def parse_header(raw: bytes) -> Layout:
    """The layout the header JSON (the N bytes after the prefix) describes, or SafetensorError."""
    header = _header(raw)
    tensors = sum(1 for name in header if name != "__metadata__")
    return Layout(len(raw), _data_bytes(header), tensors)


def check_size(layout: Layout, size: int) -> None:
    """The file of `size` bytes is exactly what the header describes."""
    if layout.total_bytes > size:
        raise _fail("incomplete metadata, file not fully covered", "tensors_outside_file")
    if layout.total_bytes != size:
        raise _fail("incomplete metadata, file not fully covered", "trailing_bytes")


class HeaderReader:
    """Reads the header off a stream's first chunks: `feed` returns the Layout once it is whole."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length: int | None = None
        self.layout: Layout | None = None

    def feed(self, chunk: bytes) -> Layout | None:
        if self.layout is not None:
            return self.layout
        self._buffer += chunk
        if len(self._buffer) > 8 and self._buffer[8] != ord("{"):
            # The format says the header MUST begin with `{`: a pickle or zip checkpoint renamed, say.
            raise _fail("the header does not begin with `{`: not a safetensors file")
        if self._length is None and len(self._buffer) >= 8:
            self._length = header_length(bytes(self._buffer[:8]))
        if self._length is not None and len(self._buffer) >= 8 + self._length:
            self.layout = parse_header(bytes(self._buffer[8 : 8 + self._length]))
            self._buffer = bytearray()
        return self.layout

    def finish(self, size: int) -> Layout:
        """At the end of the stream (`size` bytes in all): the checked layout."""
        if self.layout is None:
            if self._length is None:
                raise _fail("header too small", "truncated_header")
            raise _fail("invalid header length", "truncated_header")
        check_size(self.layout, size)
        return self.layout


def check_safetensors(path: Path) -> None:
    """Raise safetensors' error when `path` could not be opened as a safetensors file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        n = header_length(f.read(8))
        if 8 + n > size:
            raise _fail("invalid header length", "truncated_header")
        layout = parse_header(f.read(n))
    check_size(layout, size)


def is_safetensors_name(name: str) -> bool:
    return name.lower().endswith(SAFETENSORS_SUFFIXES)


def is_pickle_name(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def check_weights(path: Path) -> None:
    """What loading `path` would raise before any tensor is built (nothing for formats not checked)."""
    if is_safetensors_name(path.name):
        check_safetensors(path)
