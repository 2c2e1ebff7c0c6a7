"""A selection of renders as one ZIP: the full-size PNGs, streamed as they are read from storage, and
`contact-sheet.png` last (one page: each render's thumbnail with its settings, drawn with Pillow).

The archive is written through `zipfile` into a sink that is emptied after each member, so the answer
starts at once and memory holds one render at a time (plus the sheet's small tiles). PNGs are stored,
not deflated: they are compressed already.
"""

from __future__ import annotations

import asyncio
import io
import logging
import textwrap
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from backend.storage import Storage, StorageError

logger = logging.getLogger(__name__)

ZIP_MAX_IMAGES = 100
ZIP_MAX_BYTES = 512 * 1024 * 1024  # the PNGs' total size
SHEET_COLUMNS = 3
TILE_PX = 360
TEXT_LINES = 7
LINE_PX = 18
MARGIN_PX = 24
SHEET_NAME = "contact-sheet.png"


@dataclass(frozen=True)
class Render:
    """One image of the ZIP: where it is stored, its file name and the settings shown under it."""

    storage_key: str
    name: str
    settings: dict[str, Any]


def file_name(job_id: str, index: int, seed: int) -> str:
    return f"render-{job_id[:8]}-{index + 1}-seed{seed}.png"


def settings_lines(name: str, s: dict[str, Any]) -> list[str]:
    """What the sheet says under a render: its file, style, size, sampling and prompt (in characters
    Pillow's built-in font has: an x, not a multiplication sign)."""
    head = [
        name,
        f"{s.get('style', '')} · {s.get('kind', 'text')} · {s.get('width')}x{s.get('height')}",
        f"seed {s.get('seed')} · {s.get('steps')} steps · cfg {s.get('cfg')} · {s.get('sampler')}",
    ]
    prompt = textwrap.wrap(str(s.get("prompt", "")), 46) or [""]
    lines = head + prompt[: TEXT_LINES - len(head)]
    if len(prompt) > TEXT_LINES - len(head):
        lines[-1] = lines[-1][:44] + "…"
    return lines


def make_tile(png: bytes) -> PILImage.Image:
    img = PILImage.open(io.BytesIO(png)).convert("RGB")
    img.thumbnail((TILE_PX, TILE_PX), PILImage.Resampling.LANCZOS)
    return img


def make_contact_sheet(tiles: Sequence[tuple[PILImage.Image, list[str]]]) -> bytes:
    """One page: the tiles in rows of SHEET_COLUMNS, each with its lines of settings below."""
    rows = max(1, -(-len(tiles) // SHEET_COLUMNS))
    cell_w = TILE_PX + MARGIN_PX
    cell_h = TILE_PX + TEXT_LINES * LINE_PX + MARGIN_PX * 2
    sheet = PILImage.new("RGB", (MARGIN_PX + SHEET_COLUMNS * cell_w, MARGIN_PX + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for n, (tile, lines) in enumerate(tiles):
        x = MARGIN_PX + (n % SHEET_COLUMNS) * cell_w
        y = MARGIN_PX + (n // SHEET_COLUMNS) * cell_h
        sheet.paste(tile, (x + (TILE_PX - tile.width) // 2, y + TILE_PX - tile.height))  # on its text
        for i, line in enumerate(lines):
            fill = (20, 20, 20) if i == 0 else (90, 90, 90)
            draw.text((x, y + TILE_PX + 8 + i * LINE_PX), line, fill=fill, font=font)
    out = io.BytesIO()
    sheet.save(out, "PNG", optimize=True)
    return out.getvalue()


class _Sink:
    """A write-only, unseekable file for `zipfile`: what was written since the last `take`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    return info


async def zip_stream(storage: Storage, renders: Sequence[Render]) -> AsyncIterator[bytes]:
    """The ZIP's bytes, one member at a time; a render missing from storage is named in MISSING.txt."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, mode="w")
    tiles: list[tuple[PILImage.Image, list[str]]] = []
    missing: list[str] = []
    for render in renders:
        try:
            png = await storage.load(render.storage_key)
        except StorageError:
            logger.warning(
                "render missing from storage", extra={"action": "zip_missing", "key": render.storage_key}
            )
            missing.append(render.name)
            continue
        archive.writestr(_member(render.name), png)
        tiles.append((await asyncio.to_thread(make_tile, png), settings_lines(render.name, render.settings)))
        del png
        yield sink.take()
    sheet = await asyncio.to_thread(make_contact_sheet, tiles)
    archive.writestr(_member(SHEET_NAME), sheet)
    if missing:
        archive.writestr(_member("MISSING.txt"), "\n".join(missing) + "\n")
    archive.close()
    yield sink.take()
