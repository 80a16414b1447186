from __future__ import annotations

import pytest

from tasks.images import ImageInfo, Rejected, inspect_image, is_imgur_removed_placeholder, sniff_format
from tests.imaging import decompression_bomb_png, image_bytes


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif")])
def test_accepts_the_four_formats(fmt: str, ext: str):
    info = inspect_image(image_bytes(fmt, size=(70, 50)))
    assert info == ImageInfo(fmt, 70, 50) and info.ext == ext


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK"])
def test_accepts_other_colour_modes(mode: str):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    assert inspect_image(image_bytes(fmt, mode=mode)).format == fmt


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "not_an_image"),
        (b"  <html>", "not_an_image"),
        (b"BM" + b"\x00" * 100, "not_an_image"),  # BMP: not a format we keep
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "not_an_image"),  # an MP4
    ],
)
def test_rejects_what_is_not_an_image(data: bytes, reason: str):
    with pytest.raises(Rejected) as caught:
        inspect_image(data)
    assert caught.value.reason == reason


def test_html_is_named_in_the_detail():
    with pytest.raises(Rejected, match="HTML"):
        inspect_image(b"<!doctype html><title>x</title>")


def test_rejects_a_truncated_jpeg():
    data = image_bytes("JPEG", size=(200, 200), seed=3)
    with pytest.raises(Rejected) as caught:
        inspect_image(data[: len(data) * 6 // 10])
    assert caught.value.reason == "truncated"


def test_rejects_a_decompression_bomb_before_decoding():
    with pytest.raises(Rejected) as caught:
        inspect_image(decompression_bomb_png())
    assert caught.value.reason == "decompression_bomb" and "pixels" in caught.value.detail


def test_pixel_cap_is_a_parameter():
    data = image_bytes("PNG", size=(100, 100))
    assert inspect_image(data, max_pixels=10_000).width == 100
    with pytest.raises(Rejected, match="decompression_bomb"):
        inspect_image(data, max_pixels=9_999)


def test_rejects_garbage_after_valid_magic():
    with pytest.raises(Rejected) as caught:
        inspect_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    assert caught.value.reason in ("corrupt", "truncated")


def test_sniff_format_by_magic_bytes():
    assert sniff_format(image_bytes("WEBP")) == "WEBP"
    assert sniff_format(b"GIF89a...") == "GIF"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVE") is None


def test_imgur_placeholder_by_path_or_size():
    assert is_imgur_removed_placeholder("/removed.png")
    assert is_imgur_removed_placeholder("/x.png", ImageInfo("PNG", 161, 81))
    assert not is_imgur_removed_placeholder("/x.png", ImageInfo("PNG", 160, 81))
