"""Product cut-outs: the background removed on this host's CPU (rembg with onnxruntime), adjusted, checked.

The u2net model file is put in place by model sync from the models bucket (`mlserver/models.toml`'s rembg
folder, checksummed) and named by REMBG_MODEL_PATH. rembg gets an explicit session on that local file: its own
sessions fetch missing weights from the internet at run time, this one cannot (`download_models`, where
rembg would call pooch, only names the local file). Without the file a product photo is refused with 503.

A PNG that already has meaningful transparency skips the model: its alpha is the matte. The matte is stored
beside the photo, so an adjustment (threshold, edge erosion) runs again from it without the network. The
result is an RGBA PNG: ComfyUI's core LoadImage turns its alpha into the MASK output.

Everything here is CPU-bound: callers run it through `asyncio.to_thread`.
"""

from __future__ import annotations

import io
import threading
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from backend.images import ImageRejected, encode_png, flatten_rgb, has_alpha, open_oriented

MODEL_INPUT_SIDE_PX = 320  # u2net's input: 1x3x320x320 float; output 1x1x320x320
FOREGROUND_ALPHA = 128  # alpha at or above this is the product when measuring it
MIN_FOREGROUND_SHARE = 0.005  # less of the frame than this: no product found
MAX_FOREGROUND_SHARE = 0.9  # more than this (model path): the product fills the frame
EDGE_COVERED_SHARE = 0.6  # the product covers this much of every edge: it fills the frame too
OWN_ALPHA_MIN_SHARE = 0.01  # a PNG whose alpha leaves this share see-through is already cut out
OPAQUE_ALPHA = 250
MAX_PARALLEL_CUTOUTS = 2  # per process: each already uses CUTOUT_THREADS cores

NO_FOREGROUND = (
    "no product found in the photo: upload a PNG with transparency or a photo on a plain background"
)
FILLS_FRAME = "the product fills the frame: photograph the product with some background around it"
NOT_INSTALLED = "background removal is not installed on this server (the `cutout` extra: rembg, onnxruntime)"
NOTHING_LEFT = "nothing of the product is left after these adjustments: lower the threshold or the erosion"


class CutoutUnavailable(Exception):
    """Background removal cannot run here (no model file, rembg not installed): `code` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Adjustments:
    """`threshold`: matte values below it become transparent, the rest opaque (None: the model's soft
    edge); `erode_px`: the edge pulled in by this many pixels (a fringe of background removed)."""

    threshold: int | None = None
    erode_px: int = 0


@dataclass(frozen=True)
class Cutout:
    png: bytes  # RGBA
    width: int
    height: int
    method: str  # "model" (the network's matte) or "alpha" (the PNG's own transparency)
    adjustments: Adjustments
    foreground: float  # share of the frame that is product
    source_png: bytes = b""  # RGB photo (new cut-outs only; an adjustment reuses the stored one)
    matte_png: bytes = b""  # L

    @property
    def record(self) -> dict[str, Any]:
        """What the upload row keeps (`Upload.cutout`)."""
        return {"method": self.method, **asdict(self.adjustments), "foreground": round(self.foreground, 4)}


def process_product(data: bytes, *, max_pixels: int, max_side: int, model_path: Path, threads: int) -> Cutout:
    """A product photo (or a PNG already cut out) → its cut-out with default adjustments."""
    img = open_oriented(data, max_pixels=max_pixels, max_side=max_side)
    if has_own_alpha(img):
        rgba = img.convert("RGBA")
        rgb, matte, method = rgba.convert("RGB"), rgba.getchannel("A"), "alpha"
    else:
        rgb = flatten_rgb(img)
        matte, method = predict_matte(rgb, model_path, threads), "model"
    cut = cut_out(rgb, matte, Adjustments(), method)
    return replace(cut, source_png=encode_png(rgb), matte_png=encode_png(matte))


def adjust(source_png: bytes, matte_png: bytes, adjustments: Adjustments, method: str) -> Cutout:
    """The stored photo and matte cut out again with other adjustments (no network)."""
    rgb = PILImage.open(io.BytesIO(source_png)).convert("RGB")
    matte = PILImage.open(io.BytesIO(matte_png)).convert("L")
    return cut_out(rgb, matte, adjustments, method)


def has_own_alpha(img: PILImage.Image) -> bool:
    """Transparency that means something: some pixels see-through, not an alpha channel that is all opaque."""
    if not has_alpha(img):
        return False
    alpha = np.asarray(img.convert("RGBA").getchannel("A"))
    return float((alpha < OPAQUE_ALPHA).mean()) >= OWN_ALPHA_MIN_SHARE


def cut_out(rgb: PILImage.Image, matte: PILImage.Image, adjustments: Adjustments, method: str) -> Cutout:
    """The adjusted matte as the photo's alpha, checked: some product, and (model) not all of the frame."""
    alpha = adjusted_alpha(np.asarray(matte.convert("L"), dtype=np.uint8), adjustments)
    foreground = check_foreground(alpha, np.asarray(matte.convert("L")), method, adjustments)
    rgba = rgb.convert("RGB")
    rgba.putalpha(PILImage.fromarray(alpha, mode="L"))
    return Cutout(encode_png(rgba), rgba.width, rgba.height, method, adjustments, foreground)


def adjusted_alpha(matte: np.ndarray[Any, Any], adjustments: Adjustments) -> np.ndarray[Any, Any]:
    alpha = matte
    if adjustments.threshold is not None:
        alpha = np.where(alpha >= adjustments.threshold, 255, 0).astype(np.uint8)
    if adjustments.erode_px:
        alpha = erode(alpha, adjustments.erode_px)
    return alpha


def erode(alpha: np.ndarray[Any, Any], radius: int) -> np.ndarray[Any, Any]:
    """Grey erosion by a (2r+1)-square, as two 1-D minimum passes; the frame's edge does not erode."""
    size = 2 * radius + 1
    padded = np.pad(alpha, radius, mode="edge")
    rows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=1).min(axis=-1)
    eroded: np.ndarray[Any, Any] = np.lib.stride_tricks.sliding_window_view(rows, size, axis=0).min(axis=-1)
    return eroded


def check_foreground(
    alpha: np.ndarray[Any, Any], matte: np.ndarray[Any, Any], method: str, adjustments: Adjustments
) -> float:
    """The product's share of the frame; ImageRejected when there is none, or when it fills the frame."""
    product = alpha >= FOREGROUND_ALPHA
    share = float(product.mean())
    if share < MIN_FOREGROUND_SHARE:
        found = float((matte >= FOREGROUND_ALPHA).mean()) >= MIN_FOREGROUND_SHARE
        if found and adjustments != Adjustments():
            raise ImageRejected("cutout_empty", NOTHING_LEFT)
        raise ImageRejected("no_foreground", NO_FOREGROUND)
    edges = (product[0, :], product[-1, :], product[:, 0], product[:, -1])
    if method == "model" and (
        share > MAX_FOREGROUND_SHARE or all(float(e.mean()) >= EDGE_COVERED_SHARE for e in edges)
    ):
        raise ImageRejected("product_fills_frame", FILLS_FRAME)
    return share


# --- the model -------------------------------------------------------------------------------------------

_sessions_lock = threading.Lock()
_sessions: dict[tuple[str, int, int, int], Any] = {}
_running = threading.BoundedSemaphore(MAX_PARALLEL_CUTOUTS)


def predict_matte(rgb: PILImage.Image, model_path: Path, threads: int) -> PILImage.Image:
    """rembg's `remove(..., only_mask=True)` with the local u2net session: the matte at the photo's size."""
    session = model_session(model_path, threads)
    from rembg import remove

    # rembg scales the network's output to its own min..max: a flat output (a plain picture) is 0/0, NaN,
    # which becomes an empty matte, "no product found".
    with _running, np.errstate(divide="ignore", invalid="ignore"):
        mask = remove(rgb, session=session, only_mask=True)
    return mask.convert("L") if isinstance(mask, PILImage.Image) else PILImage.fromarray(mask).convert("L")


def model_session(model_path: Path, threads: int) -> Any:
    """One onnxruntime session per model file (its path, size and mtime: a synced new file is reloaded)."""
    try:
        stat = model_path.stat()
    except OSError as exc:
        raise CutoutUnavailable(
            "cutout_model_missing",
            "product photos cannot be cut out on this server yet: its background-removal model "
            "(REMBG_MODEL_PATH) is not in place; try again later, or upload a PNG with transparency",
        ) from exc
    key = (str(model_path.resolve()), stat.st_size, stat.st_mtime_ns, threads)
    with _sessions_lock:
        if key not in _sessions:
            _sessions.clear()  # one model file at a time: the one REMBG_MODEL_PATH names now
            _sessions[key] = _load_session(model_path, threads)
        return _sessions[key]


def _load_session(model_path: Path, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise CutoutUnavailable("cutout_unavailable", NOT_INSTALLED) from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return local_session_class()(
            "u2net", options, model_path=str(model_path), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own classes for an unreadable model
        raise CutoutUnavailable(
            "cutout_unavailable", f"the background-removal model could not be loaded: {type(exc).__name__}"
        ) from exc


@lru_cache(maxsize=1)
def local_session_class() -> type[Any]:
    """rembg's U2netSession (u2net's normalisation, 320x320 input, min-max of the first output, resized
    back) on a local file: `download_models` is where rembg fetches weights; here it names the file."""
    try:
        from rembg.sessions.u2net import U2netSession
    except ImportError as exc:
        raise CutoutUnavailable("cutout_unavailable", NOT_INSTALLED) from exc

    class LocalU2netSession(U2netSession):  # type: ignore[misc]
        @classmethod
        def download_models(cls, *args: Any, **kwargs: Any) -> str:
            path = Path(str(kwargs["model_path"]))
            if not path.is_file():
                raise FileNotFoundError(path)
            return str(path)

    return LocalU2netSession
