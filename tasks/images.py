"""Deciding whether bytes are an image worth storing. Pure: bytes in, facts or a named rejection out."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

# Magic bytes of the formats we keep. Anything else (an HTML error page served with 200, a video,
# a BMP) is rejected before Pillow sees it.
MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000: far above any fan art, far below a decompression bomb

# Imgur answers a deleted image with a redirect to this placeholder (161x81 PNG, 503 bytes).
IMGUR_REMOVED_PATH = "/removed.png"
IMGUR_REMOVED_SIZE = (161, 81)


class Rejected(Exception):
    """Bytes that must not be stored. `reason` is a short name counted in summaries."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class ImageInfo:
    format: str  # JPEG | PNG | GIF | WEBP
    width: int
    height: int

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.format]


def sniff_format(data: bytes) -> str | None:
    for magic, name in MAGIC:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def inspect_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Check that `data` is a whole, decodable JPEG, PNG, WebP or GIF (first frame) of sane size.

    Raises Rejected(reason) with reason one of: empty, not_an_image, decompression_bomb, truncated, corrupt.
    The pixel count is checked from the header, before anything is decoded."""
    if not data:
        raise Rejected("empty")
    sniffed = sniff_format(data)
    if sniffed is None:
        head = data[:64].lstrip().lower()
        what = "HTML" if head.startswith((b"<!doctype html", b"<html", b"<")) else "unknown bytes"
        raise Rejected("not_an_image", what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[sniffed])
            width, height = image.size
            if width * height > max_pixels:
                raise Rejected("decompression_bomb", f"{width}x{height} pixels")
            if sniffed == "JPEG":
                # Decode at 1/8 scale: every byte of the scan is still read and checked (a truncated file
                # still fails), but the inverse DCT is skipped. About 4x faster; the pixels are not kept.
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.seek(0)  # GIF: the first frame is the picture we keep
            image.load()
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Rejected("decompression_bomb", str(exc)) from None
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() or "broken data stream" in str(exc) else "corrupt"
        raise Rejected(reason, str(exc)) from None
    except Exception as exc:  # Pillow raises many kinds of errors on hostile input
        raise Rejected("corrupt", f"{type(exc).__name__}: {exc}") from None
    if width <= 0 or height <= 0:
        raise Rejected("corrupt", "zero-sized image")
    return ImageInfo(sniffed, width, height)


def is_imgur_removed_placeholder(final_path: str, info: ImageInfo | None = None) -> bool:
    if final_path.endswith(IMGUR_REMOVED_PATH):
        return True
    return info is not None and info.format == "PNG" and (info.width, info.height) == IMGUR_REMOVED_SIZE
