"""Images as the model receives them: recognised by their bytes, sized from their headers, priced like the provider.

Only the first bytes decide what an image is (never its name or the platform's MIME type), and dimensions come from
the format's own header, so no imaging library is needed and a hostile file is never decoded.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

MAX_SIDE = 65_535 * 4
"""Sides beyond any format's honest range are treated as unreadable rather than priced."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    mimetype: str
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    """The image MIME type the magic bytes say, for the formats models take (PNG, JPEG, GIF, WebP); else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def inspect(data: bytes) -> ImageInfo | None:
    """Type and dimensions from the header; None when the bytes are not a well-formed image of a known format."""
    mimetype = sniff(data)
    if mimetype is None:
        return None
    try:
        size = _SIZERS[mimetype](data)
    except (struct.error, IndexError, ValueError):
        return None
    if size is None:
        return None
    width, height = size
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        return None
    return ImageInfo(mimetype, width, height)


def _png(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _gif(data: bytes) -> tuple[int, int] | None:
    width, height = struct.unpack("<HH", data[6:10])
    return width, height


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sides
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: a signature byte, then 14-bit sides minus one, packed
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: the canvas, 24-bit sides minus one
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


MAX_JPEG_STEPS = 10_000
"""Segments and fill bytes walked before a JPEG's frame header: real files have a few dozen (EXIF, ICC profiles split
in 64 KB pieces); a crafted file of nothing but fill bytes would otherwise hold the event loop for a second per 10 MB."""

_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""JPEG start-of-frame markers (every coding process), which carry the dimensions; C4, C8 and CC are other segments."""


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """Walk the segments to the first start-of-frame: each step moves forward, at most MAX_JPEG_STEPS of them."""
    at = 2
    for _ in range(MAX_JPEG_STEPS):
        if at + 4 > len(data):
            return None
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if length < 2:
            return None
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


_SIZERS = {"image/png": _png, "image/jpeg": _jpeg, "image/gif": _gif, "image/webp": _webp}


# -- what an image costs --
# OpenAI bills images in tokens by their size, with detail "auto" or "high" (what is sent here; the model decides):
# https://platform.openai.com/docs/guides/images-vision?api-mode=chat#calculating-costs
# Tile models: fit within 2048x2048, scale the shortest side to 768, count 512px tiles: base + per_tile * tiles.
# gpt-4o, gpt-4.1 and gpt-4.5: 85 + 170 per tile; gpt-4o-mini 2833 + 5667 (priced like gpt-4o in dollars);
# o1, o3: 75 + 150; gpt-5: 70 + 140. Patch models (gpt-4.1-mini, gpt-4.1-nano, o4-mini): 32px patches, at most
# 1536 (the image scaled down to fit), times a per-model multiplier.

@dataclass(frozen=True, slots=True)
class TileCost:
    base: int
    per_tile: int


@dataclass(frozen=True, slots=True)
class PatchCost:
    multiplier: float


ImageCost = TileCost | PatchCost

# Longest prefix wins, as for context windows (chatbots.tokens).
_COSTS: dict[str, ImageCost] = {
    "gpt-4o": TileCost(85, 170),
    "chatgpt-4o": TileCost(85, 170),
    "gpt-4o-mini": TileCost(2833, 5667),
    "gpt-4.1": TileCost(85, 170),
    "gpt-4.5": TileCost(85, 170),
    "gpt-4-turbo": TileCost(85, 170),
    "gpt-4.1-mini": PatchCost(1.62),
    "gpt-4.1-nano": PatchCost(2.46),
    "o4-mini": PatchCost(1.72),
    "o1": TileCost(75, 150),
    "o3": TileCost(75, 150),
    "gpt-5": TileCost(70, 140),
}
FALLBACK_COST = TileCost(85, 170)
"""Unknown models (local vision models, proxies) are counted like gpt-4o: at most 1,445 tokens an image, within the
range open models use (a few hundred to a few thousand), and never zero, so caps still see images."""
MAX_PATCHES = 1536


def cost_for(model: str) -> ImageCost:
    name = model.rsplit("/", 1)[-1].lower()
    best = max((prefix for prefix in _COSTS if name.startswith(prefix)), key=len, default="")
    return _COSTS[best] if best else FALLBACK_COST


def image_tokens(model: str, width: int, height: int) -> int:
    """The tokens the provider bills for one image of these dimensions, sent with detail auto (or high)."""
    cost = cost_for(model)
    if isinstance(cost, PatchCost):
        return math.ceil(_patches(width, height) * cost.multiplier)
    return cost.base + cost.per_tile * _tiles(width, height)


def _tiles(width: int, height: int) -> int:
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    # The short side to 768, up or down as documented (an upper bound for small images, which is what caps want), but
    # never past the 2048 square the first step fitted: a thin strip scaled up 768/width would count dozens of tiles.
    scale = min(768 / min(w, h), 2048 / max(w, h))
    w, h = w * scale, h * scale
    return math.ceil(int(w) / 512) * math.ceil(int(h) / 512)


def _patches(width: int, height: int) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches <= MAX_PATCHES:
        return patches
    shrink = math.sqrt(32 * 32 * MAX_PATCHES / (width * height))
    w, h = width * shrink, height * shrink
    # Scaled again so whole patches fit along the width, as OpenAI's worked examples do.
    shrink *= math.floor(w / 32) / (w / 32)
    w, h = width * shrink, height * shrink
    return min(MAX_PATCHES, math.ceil(w / 32) * math.ceil(h / 32))
