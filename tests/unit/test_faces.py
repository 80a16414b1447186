from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.faces import (
    CascadeError,
    FaceParams,
    crop_face,
    ensure_cascade,
    load_rgb,
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
    assert FaceParams().key == FaceParams().key
    assert FaceParams().key != FaceParams(margin=0.3).key
    assert FaceParams().key != FaceParams(face_size=96).key


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
