"""Product cut-outs through the real rembg and onnxruntime code path, on a model file the test builds
(u2net's signature, a known matte): no download, the PNG's own alpha, adjustments, and every refusal."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import cutout
from backend.cutout import (
    FILLS_FRAME,
    NO_FOREGROUND,
    NOTHING_LEFT,
    Adjustments,
    CutoutUnavailable,
    adjust,
    erode,
    process_product,
)
from backend.images import ImageRejected
from tests.support.cutout import product_photo, transparent_png, write_matte_model
from tests.support.network import Guard, NetworkBlocked

LIMITS = {"max_pixels": 36_000_000, "max_side": 2048, "threads": 1}


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # rembg's own home is empty: a session that fell back on it would have to download.
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "rembg-home"))
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "rembg-home"))
    return write_matte_model(tmp_path / "models" / "rembg" / "u2net.onnx")


def alpha_of(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.mode == "RGBA"
    return np.asarray(img.getchannel("A"))


def test_the_guard_refuses_what_is_beyond_the_loopback(no_network: Guard) -> None:
    # 127.0.0.2 is loopback too, so a broken guard sends nothing off this machine
    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect(("127.0.0.2", 9))
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("127.0.0.2", 443)
    no_network.attempts.clear()


def test_the_model_cuts_the_product_out_through_rembg_without_any_download(
    model: Path, no_network: Guard, tmp_path: Path
) -> None:
    cut = process_product(product_photo(), model_path=model, **LIMITS)
    alpha = alpha_of(cut.png)
    assert (cut.width, cut.height, cut.method) == (480, 360, "model")
    # the rectangle (144..335 x 90..269) is the product, the frame around it background
    assert alpha[100:260, 154:326].min() >= 250
    assert alpha[:80, :].max() <= 5 and alpha[280:, :].max() <= 5 and alpha[:, :130].max() <= 5
    assert cut.foreground == pytest.approx(0.2, abs=0.01)
    rgb = np.asarray(Image.open(io.BytesIO(cut.png)).convert("RGB"))
    assert tuple(int(v) for v in rgb[180, 240]) == pytest.approx((30, 40, 90), abs=6)  # its own colours
    assert Image.open(io.BytesIO(cut.matte_png)).mode == "L"
    assert Image.open(io.BytesIO(cut.source_png)).mode == "RGB"
    assert not (tmp_path / "rembg-home").exists()  # rembg's download folder was never even made


def test_the_session_is_rembgs_u2net_on_the_local_file(model: Path, no_network: Guard) -> None:
    from rembg.sessions.u2net import U2netSession

    session = cutout.model_session(model, 1)
    assert isinstance(session, U2netSession)
    assert session.inner_session.get_providers() == ["CPUExecutionProvider"]
    assert [i.shape for i in session.inner_session.get_inputs()] == [[1, 3, 320, 320]]
    assert cutout.model_session(model, 1) is session  # loaded once


def test_a_missing_model_is_unavailable_and_nothing_is_downloaded(tmp_path: Path, no_network: Guard) -> None:
    with pytest.raises(CutoutUnavailable) as caught:
        process_product(product_photo(), model_path=tmp_path / "rembg" / "u2net.onnx", **LIMITS)
    assert caught.value.code == "cutout_model_missing"
    # rembg's session itself refuses a missing file rather than fetching one
    with pytest.raises(FileNotFoundError):
        cutout.local_session_class().download_models(model_path=str(tmp_path / "nothing.onnx"))


def test_a_corrupt_model_is_unavailable(tmp_path: Path, no_network: Guard) -> None:
    broken = tmp_path / "rembg" / "u2net.onnx"
    broken.parent.mkdir()
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(CutoutUnavailable) as caught:
        process_product(product_photo(), model_path=broken, **LIMITS)
    assert caught.value.code == "cutout_unavailable"


def test_a_png_with_transparency_skips_the_model(tmp_path: Path, no_network: Guard) -> None:
    cut = process_product(transparent_png(), model_path=tmp_path / "absent.onnx", **LIMITS)
    assert cut.method == "alpha"
    alpha = alpha_of(cut.png)
    original = np.asarray(Image.open(io.BytesIO(transparent_png())).getchannel("A"))
    assert np.array_equal(alpha, original)


def test_an_opaque_png_goes_through_the_model(model: Path, no_network: Guard) -> None:
    opaque = Image.open(io.BytesIO(product_photo(fmt="PNG"))).convert("RGBA")  # alpha 255 everywhere
    out = io.BytesIO()
    opaque.save(out, "PNG")
    assert process_product(out.getvalue(), model_path=model, **LIMITS).method == "model"


def test_threshold_makes_the_edge_hard_and_erosion_pulls_it_in(model: Path, no_network: Guard) -> None:
    cut = process_product(product_photo(), model_path=model, **LIMITS)
    soft = alpha_of(cut.png)
    assert len(np.unique(soft)) > 2  # the model's soft edge
    hard = alpha_of(adjust(cut.source_png, cut.matte_png, Adjustments(threshold=128), "model").png)
    assert set(np.unique(hard)) == {0, 255}
    assert np.array_equal(hard == 255, soft >= 128)
    eroded = adjust(cut.source_png, cut.matte_png, Adjustments(threshold=128, erode_px=5), "model")
    inner = alpha_of(eroded.png)
    assert np.array_equal(inner == 255, erode(hard, 5) == 255)
    assert inner[90:95, 144:336].max() == 0 and inner[100:260, 154:326].min() == 255  # 5 px gone
    assert eroded.foreground == pytest.approx((192 - 10) * (180 - 10) / (480 * 360), abs=0.005)
    assert eroded.record == {"method": "model", "threshold": 128, "erode_px": 5, "foreground": 0.1791}


def test_adjusting_reruns_from_the_matte_without_the_model(model: Path, no_network: Guard) -> None:
    cut = process_product(product_photo(), model_path=model, **LIMITS)
    model.unlink()  # the network is not needed any more
    again = adjust(cut.source_png, cut.matte_png, Adjustments(), "model")
    assert again.png == cut.png


def test_erosion_is_a_square_minimum_filter_that_spares_the_frame_edge() -> None:
    a = np.full((9, 9), 255, np.uint8)
    a[4, 4] = 0
    out = erode(a, 1)
    assert (out[3:6, 3:6] == 0).all() and out[0, 0] == 255 and (out == 0).sum() == 9


def cornered(corner: float) -> bytes:
    """A product filling the frame but for background in its four corners (`corner` of each side)."""
    img = Image.open(io.BytesIO(product_photo(box=(0.0, 0.0, 1.0, 1.0), fmt="PNG")))
    cw, ch = int(corner * img.width), int(corner * img.height)
    for x, y in ((0, 0), (img.width - cw, 0), (0, img.height - ch), (img.width - cw, img.height - ch)):
        img.paste((250, 250, 250), (x, y, x + cw, y + ch))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("photo", "code", "message"),
    [
        (product_photo(colour=(250, 250, 250)), "no_foreground", NO_FOREGROUND),  # nothing but background
        (product_photo(box=(0.02, 0.02, 0.98, 0.98)), "product_fills_frame", FILLS_FRAME),
        (cornered(0.18), "product_fills_frame", FILLS_FRAME),  # 87% of it, but every edge 64% covered
        (product_photo(colour=(30, 40, 90), background=(30, 40, 90)), "no_foreground", NO_FOREGROUND),
        (product_photo(40, 40), "image_too_small", "40x40 is too small: at least 64x64 pixels"),
        (b"not an image at all", "not_an_image", "the file is not a PNG, JPEG, WebP or HEIC image"),
        (transparent_png(alpha_inside=0), "no_foreground", NO_FOREGROUND),  # all see-through
    ],
)
def test_bad_product_photos_are_refused(
    model: Path, no_network: Guard, photo: bytes, code: str, message: str
) -> None:
    with pytest.raises(ImageRejected) as caught:
        process_product(photo, model_path=model, **LIMITS)
    assert (caught.value.code, str(caught.value)) == (code, message)


def test_adjustments_that_leave_nothing_are_refused(model: Path, no_network: Guard) -> None:
    cut = process_product(product_photo(box=(0.45, 0.45, 0.55, 0.55)), model_path=model, **LIMITS)
    with pytest.raises(ImageRejected) as caught:
        adjust(cut.source_png, cut.matte_png, Adjustments(erode_px=20), "model")
    assert (caught.value.code, str(caught.value)) == ("cutout_empty", NOTHING_LEFT)


def test_a_required_role_names_what_the_input_takes() -> None:
    from backend.upload_roles import required_role_error

    assert required_role_error("product", "product") is None
    assert required_role_error("sketch", "product") == (
        "this input takes a product photo; the upload is a sketch (upload it with role=product)"
    )
