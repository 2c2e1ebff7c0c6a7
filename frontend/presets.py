"""What the studio offers before a designer types anything: room presets, sizes, samplers, defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoomPreset:
    name: str
    prompt: str
    negative: str


NEGATIVE_BASE = "people, text, watermark, cluttered, distorted perspective"

ROOM_PRESETS: tuple[RoomPreset, ...] = (
    RoomPreset(
        "Living room",
        "sunlit living room, low sofa with linen cushions, rattan armchairs, teak floor, "
        "large windows, indoor plants, coffee table, area rug",
        NEGATIVE_BASE,
    ),
    RoomPreset(
        "Bedroom",
        "calm bedroom, upholstered bed with soft bedding, bedside tables with lamps, wooden floor, "
        "curtains filtering morning light, reading chair",
        NEGATIVE_BASE,
    ),
    RoomPreset(
        "Kitchen",
        "open kitchen with an island, stone countertop, wooden cabinets, pendant lights, bar stools, "
        "open shelves with ceramics, daylight",
        NEGATIVE_BASE + ", dirty dishes",
    ),
    RoomPreset(
        "Bathroom",
        "spa bathroom, freestanding bathtub, terrazzo floor, vanity with vessel sink, round mirror, "
        "walk-in shower with glass screen, plants",
        NEGATIVE_BASE,
    ),
    RoomPreset(
        "Home office",
        "home office, solid wood desk facing a window, ergonomic chair, bookshelves, desk lamp, "
        "rug, framed art",
        NEGATIVE_BASE + ", cables",
    ),
    RoomPreset(
        "Restaurant",
        "restaurant dining room, banquette seating, round tables with linen, warm pendant lights, "
        "bar counter, tiled floor, evening ambience",
        NEGATIVE_BASE,
    ),
    RoomPreset(
        "Hotel lobby",
        "hotel lobby, double-height ceiling, reception desk, lounge seating groups, marble floor, "
        "statement chandelier, large plants",
        NEGATIVE_BASE,
    ),
    RoomPreset(
        "Café",
        "small café, counter with espresso machine, bistro tables, cane chairs, cement tiles, "
        "shelves with plants, street-facing windows",
        NEGATIVE_BASE,
    ),
)

# Sizes SD 1.5 renders well (the backend accepts 256..1024 in multiples of 8).
SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "Landscape 768 × 512": (768, 512),
    "Portrait 512 × 768": (512, 768),
    "Square 512 × 512": (512, 512),
    "Wide 912 × 512": (912, 512),
    "Large landscape 1024 × 680": (1024, 680),
}
CUSTOM_SIZE = "Custom"
SIDE_MIN, SIDE_MAX = 256, 1024

SAMPLERS = ("dpmpp_2m", "euler", "euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "heun", "ddim", "uni_pc")
SCHEDULERS = ("karras", "normal", "exponential", "simple")

DEFAULT_PROMPT = ROOM_PRESETS[0].prompt
DEFAULT_NEGATIVE = ROOM_PRESETS[0].negative
DEFAULT_STEPS = 25
DEFAULT_CFG = 7.0
DEFAULT_SKETCH_STRENGTH = 0.9


def preset(name: str) -> RoomPreset | None:
    return next((p for p in ROOM_PRESETS if p.name == name), None)


def size_preset_for(width: int, height: int) -> str:
    """The preset name of a size, or CUSTOM_SIZE."""
    return next((n for n, wh in SIZE_PRESETS.items() if wh == (width, height)), CUSTOM_SIZE)


def size_for_aspect(width: int, height: int) -> tuple[int, int]:
    """The render size nearest an image's shape (multiples of 8 within SIDE_MIN..SIDE_MAX), about as
    many pixels as the default 768 × 512; a preset when one has the same shape."""
    ratio = width / height
    for w, h in SIZE_PRESETS.values():
        if abs(w / h - ratio) < 0.01:
            return w, h
    area = 768 * 512

    def side(value: float) -> int:
        return max(SIDE_MIN, min(SIDE_MAX, round(value / 8) * 8))

    w = side((area * ratio) ** 0.5)
    return w, side(w / ratio)
