from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image

from flows.settings import Settings
from tasks.faces import (
    CascadeError,
    crop_face,
    decode_rgb,
    ensure_cascade,
    load_rgb,
    overlaps,
    to_rgb_array,
)


def gradient(height: int = 200, width: int = 300) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def test_crop_inside_the_image_is_the_grown_square_box_resized():
    image = gradient()
    crop = crop_face(image, (100, 50, 40, 40), margin=0.25, size=60)
    assert crop.shape == (60, 60, 3) and crop.dtype == np.uint8
    # the grown box is 60x60 from (90, 40): at size 60 the crop is exactly that region
    assert np.array_equal(crop, image[40:100, 90:150])


def test_crop_of_a_tall_box_is_square_around_its_centre():
    image = gradient()
    crop = crop_face(image, (100, 50, 20, 60), margin=0.0, size=60)
    assert np.array_equal(crop, image[50:110, 80:140])


def test_crop_leaving_the_image_is_padded_with_replicated_edges():
    image = gradient()
    crop = crop_face(image, (0, 0, 40, 40), margin=0.5, size=80)  # grown box spans (-20, -20) .. (60, 60)
    assert crop.shape == (80, 80, 3)
    assert np.array_equal(crop[20:, 20:], image[0:60, 0:60])
    assert np.array_equal(crop[:20, 20:], np.repeat(image[0:1, 0:60], 20, axis=0))  # top rows = first row
    assert np.array_equal(crop[20:, :20], np.repeat(image[0:60, 0:1], 20, axis=1))


def test_crop_resizes_down_and_up():
    image = gradient(400, 400)
    assert crop_face(image, (100, 100, 200, 200), 0.0, 32).shape == (32, 32, 3)
    assert crop_face(image, (100, 100, 10, 10), 0.0, 128).shape == (128, 128, 3)


def test_params_key_changes_with_any_parameter():
    shipped = Settings.shipped().face_params()
    assert shipped.key == Settings.shipped().face_params().key
    assert shipped.key != dataclasses.replace(shipped, margin=0.3).key
    assert shipped.key != dataclasses.replace(shipped, face_size=96).key


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK"])
def test_any_mode_loads_as_rgb_with_transparency_on_white(mode: str, tmp_path: Path):
    image = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # fully transparent red
    converted = image.convert(mode) if mode != "P" else image.convert("P")
    if mode == "P":
        converted.info["transparency"] = 0
    array = to_rgb_array(converted)
    assert array.shape == (10, 20, 3)
    if mode in ("RGBA", "LA"):
        assert (array == 255).all()  # transparent areas count as white, not as their hidden colour
    path = tmp_path / "x.png"
    image.save(path)
    assert load_rgb(path).shape == (10, 20, 3)


def test_gif_loads_its_first_frame(tmp_path: Path):
    first, second = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    path = tmp_path / "a.gif"
    first.save(path, save_all=True, append_images=[second])
    pixel = load_rgb(path)[0, 0]
    assert pixel[0] > 200 and pixel[2] < 50


def test_cascade_is_downloaded_once_and_checked(tmp_path: Path):
    upstream = tmp_path / "upstream.xml"
    upstream.write_bytes(b"<opencv_storage>fake</opencv_storage>")
    digest = hashlib.sha256(upstream.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    path = ensure_cascade(None, cache, url=upstream.as_uri(), sha256=digest)
    assert path == cache / "lbpcascade_animeface.xml" and path.read_bytes() == upstream.read_bytes()
    upstream.unlink()  # a second call uses the checked copy, no download
    assert ensure_cascade(None, cache, url=upstream.as_uri(), sha256=digest) == path


def test_cascade_with_the_wrong_checksum_is_refused(tmp_path: Path):
    upstream = tmp_path / "upstream.xml"
    upstream.write_bytes(b"tampered")
    with pytest.raises(CascadeError, match="sha256"):
        ensure_cascade(None, tmp_path / "cache", url=upstream.as_uri(), sha256="0" * 64)
    assert not (tmp_path / "cache" / "lbpcascade_animeface.xml").exists()


def test_unreachable_cascade_says_what_to_do(tmp_path: Path):
    with pytest.raises(CascadeError, match="YOTSUBA_CASCADE_PATH"):
        ensure_cascade(None, tmp_path / "cache", url=(tmp_path / "missing.xml").as_uri())
    with pytest.raises(CascadeError, match="does not exist"):
        ensure_cascade(tmp_path / "nope.xml", tmp_path / "cache")


def test_overlapping_or_contained_boxes_are_one_face():
    assert overlaps((0, 0, 100, 100), (10, 10, 100, 100))  # IoU 0.68
    assert overlaps((0, 0, 200, 200), (60, 60, 70, 70))  # a tight box inside a looser one: IoU 0.12
    assert not overlaps((0, 0, 100, 100), (70, 70, 100, 100))  # IoU 0.05, 9% of either inside the other
    assert not overlaps((0, 0, 100, 100), (100, 0, 100, 100))  # touching


def test_a_tilted_crop_is_cut_upright_from_the_rotated_picture():
    # A bar tilted by 30 degrees about (200, 150): cut with angle 30 it comes out horizontal.
    image = np.zeros((300, 400, 3), np.uint8)
    matrix = cv2.getRotationMatrix2D((200.0, 150.0), -30.0, 1.0)  # the picture of a bar, rotated by -30
    bar = np.zeros_like(image)
    bar[145:155, 140:260] = 255
    image = cv2.warpAffine(bar, matrix, (400, 300))
    box = (150, 100, 100, 100)
    upright = crop_face(image, box, margin=0.0, size=100, angle=30.0)
    as_is = crop_face(image, box, margin=0.0, size=100)
    rows = upright[:, :, 0].mean(axis=1)
    assert rows[45:55].mean() > 150 and rows[:35].mean() < 10 and rows[65:].mean() < 10  # a horizontal bar
    assert as_is[:, :, 0].mean(axis=1)[45:55].mean() < 100  # cut as it is, the bar crosses the rows
    assert np.array_equal(crop_face(image, box, 0.0, 100, angle=0.0), as_is)


def test_sixteen_bit_greyscale_png_keeps_its_tones(tmp_path: Path):
    values = (np.arange(256, dtype=np.uint16) * 257).reshape(1, 256).repeat(4, axis=0)  # 0 .. 65535
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        assert opened.mode.startswith("I")  # what Pillow gives for 16-bit greyscale
    rgb = load_rgb(path)
    assert rgb.shape == (4, 256, 3)
    assert np.array_equal(rgb[0, :, 0], np.arange(256))  # not all white: each 16-bit tone to its 8-bit one


def test_exif_orientation_is_applied_with_boxes_in_upright_coordinates(tmp_path: Path):
    picture = Image.new("RGB", (40, 20), (255, 0, 0))
    picture.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left of the stored pixels
    exif = picture.getexif()
    exif[ExifTags.Base.Orientation] = 6  # shown rotated by 90 degrees clockwise: the left edge on top
    path = tmp_path / "phone.jpg"
    picture.save(path, exif=exif, quality=95)
    rgb = load_rgb(path)
    assert rgb.shape == (40, 20, 3)  # upright: 20 wide, 40 high
    assert rgb[2, 10, 2] > 200 and rgb[30, 10, 0] > 200  # blue at the top, red below
    reduced, scale = decode_rgb(path, max_side=8)  # JPEG draft: a reduced decode, the factor to full size
    assert reduced.shape[0] > reduced.shape[1] and scale * reduced.shape[1] == 20


def test_a_large_png_is_decoded_reduced_with_the_factor_to_full_size(tmp_path: Path):
    big = np.kron(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, np.ones((750, 750), np.uint8))  # 6000 x 6000
    path = tmp_path / "big.png"
    Image.fromarray(big).save(path, compress_level=1)
    rgb, scale = decode_rgb(path, max_side=2000)
    assert rgb.shape == (2000, 2000, 3) and scale == 3.0
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 252  # the picture, reduced, not a crop of it
    full, one = decode_rgb(path)
    assert full.shape == (6000, 6000, 3) and one == 1.0
