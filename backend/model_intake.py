"""A model a lead adds: the request checked, the bytes checked while they stream, the file pinned.

    request  folder known, file a bare name of a model format, a pickle only with an admin's allow_pickle
    bytes    safetensors: the header and tensor layout from the first bytes (`contract.weights`), the size
             at the end; every format: sha256 and size counted as the bytes pass, capped
    pin      a `model_files` row and, in the same transaction, the bucket's added manifest rewritten from
             every row (`backend.model_registry`)

Each refusal is a 4xx with its own code (`InvalidInput` 422 unless said): invalid_file_name,
unsupported_model_format, unknown_folder, pickle_refused, not_safetensors, truncated_header, unknown_dtype,
bad_tensor_layout, tensors_outside_file, model_too_large (413), model_conflict (409).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from backend.errors import InvalidInput, TooLarge
from contract.model_manifest import FOLDER_RE, ModelEntry, is_bare_name
from contract.weights import HeaderReader, SafetensorError, check_size, is_pickle_name, is_safetensors_name

SAFETENSORS = "safetensors"
PICKLE = "pickle"
# contract.weights' reasons → the API's codes (a client acts the same on the layout's several faults).
REASON_CODES = {
    "not_safetensors": "not_safetensors",
    "header_too_large": "not_safetensors",
    "truncated_header": "truncated_header",
    "unknown_dtype": "unknown_dtype",
    "bad_tensor_entry": "bad_tensor_layout",
    "bad_layout": "bad_tensor_layout",
    "trailing_bytes": "bad_tensor_layout",
    "tensors_outside_file": "tensors_outside_file",
}
ADVICE = {
    "not_safetensors": "The file is not a safetensors file.",
    "truncated_header": "The file ends before its safetensors header does: it was cut short.",
    "unknown_dtype": "A tensor has a data type safetensors does not know.",
    "bad_tensor_layout": "The tensors do not tile the file as their shapes and data types say.",
    "tensors_outside_file": "The header places tensors beyond the end of the file: it was cut short.",
}


def _refuse(field: str, message: str, code: str) -> InvalidInput:
    return InvalidInput(message, code=code, details=[{"field": field, "message": message}])


def model_format(folder: str, file: str, allow_pickle: bool, folders: Collection[str]) -> str:
    """The format the file will be checked as; a 4xx for what no check can make acceptable."""
    if not is_bare_name(file) or file.startswith("."):
        raise _refuse("file", f"{file!r} must be a file name without a folder or path.", "invalid_file_name")
    if not FOLDER_RE.match(folder) or folder not in folders:
        known = ", ".join(sorted(folders))
        raise _refuse("folder", f"{folder!r} is not a models folder (known: {known}).", "unknown_folder")
    if is_safetensors_name(file):
        return SAFETENSORS
    if not is_pickle_name(file):
        raise _refuse(
            "file",
            f"{file!r}: a model must be .safetensors (or, if an admin allows, a pickle such as .ckpt).",
            "unsupported_model_format",
        )
    if not allow_pickle:
        raise _refuse(
            "allow_pickle",
            "A pickle checkpoint runs code when it is loaded: convert it to safetensors, or ask an admin to "
            "add it with allow_pickle.",
            "pickle_refused",
        )
    return PICKLE


@dataclass(frozen=True)
class Checked:
    sha256: str
    size_bytes: int
    tensors: int | None  # safetensors only


class Intake:
    """Bytes of one model as they arrive: hashed, counted, capped and, for safetensors, checked from the
    header on (with `expected_size`, a header that cannot fit that size is refused before the rest)."""

    def __init__(self, fmt: str, max_bytes: int, expected_size: int | None = None) -> None:
        self.fmt = fmt
        self.max_bytes = max_bytes
        self.expected_size = expected_size
        self._sha = hashlib.sha256()
        self.size = 0
        self._header = HeaderReader() if fmt == SAFETENSORS else None
        self._sized = False
        if expected_size is not None and expected_size > max_bytes:
            raise self._too_large()

    def _too_large(self) -> TooLarge:
        gib = self.max_bytes / 1024**3
        return TooLarge(f"The model is larger than {gib:.1f} GiB.", code="model_too_large")

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise self._too_large()
        self._sha.update(chunk)
        if self._header is None or self._sized:
            return
        try:
            layout = self._header.feed(chunk)
            if layout is not None and self.expected_size is not None:
                check_size(layout, self.expected_size)
        except SafetensorError as exc:
            raise rejected(exc) from None
        self._sized = layout is not None and self.expected_size is not None

    def finish(self) -> Checked:
        tensors = None
        if self._header is not None:
            try:
                tensors = self._header.finish(self.size).tensors
            except SafetensorError as exc:
                raise rejected(exc) from None
        elif self.size == 0:
            raise _refuse("file", "The file is empty.", "truncated_header")
        return Checked(self._sha.hexdigest(), self.size, tensors)


def rejected(exc: SafetensorError) -> InvalidInput:
    code = REASON_CODES.get(exc.reason, "not_safetensors")
    return InvalidInput(
        f"{ADVICE[code]} ({exc})", code=code, details=[{"field": "file", "message": str(exc)}]
    )


def same_file(pinned: ModelEntry, checked: Checked) -> bool:
    return pinned.sha256 == checked.sha256 and pinned.size_bytes in (0, checked.size_bytes)
