"""Small real images for tests, made with Pillow (no files committed)."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), seed: int = 0, mode: str = "RGB") -> bytes:
    rng = random.Random(seed)
    image = Image.new(mode, size, tuple(rng.randrange(256) for _ in range(len(mode))) if mode != "L" else 128)
    for _ in range(20):  # some structure, so different seeds give different bytes and hashes
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        colour = tuple(rng.randrange(256) for _ in range(len(mode))) if mode != "L" else rng.randrange(256)
        image.paste(colour, (x, y, min(size[0], x + 8), min(size[1], y + 8)))
    buffer = io.BytesIO()
    if fmt == "GIF":
        frames = [image, Image.new(mode, size, (0, 0, 0))]
        frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(side: int = 100_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (10 G pixels at the default)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    data = zlib.compress(b"\x00" * (side + 1) * 4, 9)  # a few rows; the header is what matters
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def imgur_removed_png() -> bytes:
    """Stand-in for Imgur's removed.png: a 161x81 PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (161, 81), (240, 240, 240)).save(buffer, "PNG")
    return buffer.getvalue()
