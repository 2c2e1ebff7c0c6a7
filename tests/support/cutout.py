"""A stand-in for the u2net background-removal model, and product pictures to cut out.

The real u2net weights cannot be downloaded here, so the tests build a tiny ONNX model with u2net's
signature (one float input 1x3x320x320, the normalised RGB rembg feeds it; first output 1x1x320x320, a
saliency map in 0..1) whose matte is known: dark pixels are the product, light ones the background
(sigmoid of the negated mean of the normalised channels). rembg and onnxruntime run it for real.
"""

from __future__ import annotations

import io
from pathlib import Path

import onnx
from onnx import TensorProto, helper
from PIL import Image, ImageDraw

SIDE = 320
STEEPNESS = 8.0  # sigmoid(-8 * mean): black (about -2 normalised) → 1, white (about +2.2) → 0
OPSET = 17
IR_VERSION = 8


def matte_model() -> bytes:
    """The ONNX model's bytes (built with onnx's helper API and checked by onnx's checker)."""
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, SIDE, SIDE])
    d0 = helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, SIDE, SIDE])
    # u2net has seven side outputs; rembg reads the first. A second one keeps the shape of the list.
    d1 = helper.make_tensor_value_info("d1", TensorProto.FLOAT, [1, 1, SIDE, SIDE])
    k = helper.make_tensor("k", TensorProto.FLOAT, [], [-STEEPNESS])
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "k"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["d0"]),
        helper.make_node("Identity", ["d0"], ["d1"]),
    ]
    graph = helper.make_graph(nodes, "u2net-standin", [x], [d0, d1], initializer=[k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_matte_model(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(matte_model())
    return path


def product_photo(
    width: int = 480,
    height: int = 360,
    box: tuple[float, float, float, float] = (0.3, 0.25, 0.7, 0.75),
    colour: tuple[int, int, int] = (30, 40, 90),
    background: tuple[int, int, int] = (250, 250, 250),
    fmt: str = "JPEG",
) -> bytes:
    """A dark product (a rectangle at `box`, fractions of the frame) on a plain light background."""
    img = Image.new("RGB", (width, height), background)
    x0, y0, x1, y1 = box
    ImageDraw.Draw(img).rectangle(
        [int(x0 * width), int(y0 * height), int(x1 * width) - 1, int(y1 * height) - 1], fill=colour
    )
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def transparent_png(width: int = 400, height: int = 300, alpha_inside: int = 255) -> bytes:
    """A product already cut out: a red disc, opaque (or `alpha_inside`), on a transparent frame."""
    img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse(
        [width // 4, height // 4, 3 * width // 4, 3 * height // 4], fill=(200, 30, 30, alpha_inside)
    )
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
