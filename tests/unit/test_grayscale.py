from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.grayscale import DEFAULT_GRAYSCALE_THRESHOLD, colour_score, is_grayscale

ANIMEFACE = Path(__file__).resolve().parents[3] / "shared" / "data" / "animeface-10"
SEPIA = (0.393, 0.769, 0.189, 0, 0.349, 0.686, 0.168, 0, 0.272, 0.534, 0.131, 0)
W, H = 96, 80


def colourful(size: tuple[int, int] = (W, H)) -> Image.Image:
    """Hue sweeping left to right, darker towards the bottom: every hue at many luminances."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    rgb = np.stack([np.sin(2 * np.pi * (x + k / 3)) for k in range(3)], axis=-1)
    rgb = 128 + 100 * rgb * (1 - 0.6 * y[..., None])
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))


def gray_picture() -> Image.Image:
    return colourful().convert("L")


def sepia(image: Image.Image) -> Image.Image:
    return image.convert("RGB", SEPIA)


def blue_tint(image: Image.Image) -> Image.Image:
    luma = np.asarray(image.convert("L"), dtype=np.float64)[..., None]
    return Image.fromarray(np.clip(np.round(luma * np.array([0.55, 0.75, 1.15])), 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int = 85) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def left_half_mask(value: int = 255) -> Image.Image:
    mask = Image.new("L", (W, H), 255 - value)
    mask.paste(value, (0, 0, W // 2, H))
    return mask


def palette_left_visible(image: Image.Image, hidden: tuple[int, int, int]) -> Image.Image:
    """`image` as mode P, its right half palette index 0 = `hidden`, which the palette's transparency hides."""
    quantized = image.convert("RGB").quantize(64)
    indices = np.asarray(quantized).astype(np.uint8) + 1
    indices[:, W // 2 :] = 0
    result = Image.fromarray(indices, "P")
    result.putpalette(list(hidden) + quantized.getpalette()[: 3 * 255])
    result.info["transparency"] = 0
    return result


def gray_left_colour_right() -> Image.Image:
    pixels = np.asarray(colourful()).copy()
    pixels[:, : W // 2] = np.asarray(gray_picture().convert("RGB"))[:, : W // 2]
    return Image.fromarray(pixels)


def palette_colour_entries_transparent() -> Image.Image:
    """Mode P: left half gray levels (indices 0-63), right half colourful (64-127), those indices fully transparent."""
    gray = np.asarray(gray_picture().convert("RGB").quantize(64))
    colour = colourful().quantize(64)
    indices = np.asarray(colour).astype(np.uint8) + 64
    indices[:, : W // 2] = gray[:, : W // 2]
    result = Image.fromarray(indices, "P")
    gray_palette = gray_picture().convert("RGB").quantize(64).getpalette()[: 3 * 64]
    result.putpalette(gray_palette + colour.getpalette()[: 3 * 64])
    result.info["transparency"] = bytes([255] * 64 + [0] * 64 + [255] * 128)
    return result


def rgba(image: Image.Image, alpha: Image.Image) -> Image.Image:
    result = image.convert("RGBA")
    result.putalpha(alpha)
    return result


GRAY_CASES = {
    "L": lambda: gray_picture(),
    "LA": lambda: Image.merge("LA", (gray_picture(), left_half_mask())),
    "P": lambda: gray_picture().convert("RGB").quantize(64),
    "P, vivid red index transparent": lambda: palette_left_visible(gray_picture(), (255, 0, 0)),
    "P, colourful indices transparent": palette_colour_entries_transparent,
    "RGB": lambda: gray_picture().convert("RGB"),
    "RGBA, opaque": lambda: gray_picture().convert("RGBA"),
    "RGBA, colour only where transparent": lambda: rgba(gray_left_colour_right(), left_half_mask()),
    "RGBA, colourful but all transparent": lambda: rgba(colourful(), Image.new("L", (W, H), 0)),
    "RGBA, colourful but faint over white": lambda: rgba(colourful(), Image.new("L", (W, H), 2)),
    "RGBA 32x32 (not resized), colourful but transparent": lambda: rgba(
        colourful((32, 32)), Image.new("L", (32, 32), 0)
    ),
    "CMYK": lambda: gray_picture().convert("RGB").convert("CMYK"),
}

COLOUR_CASES = {
    "P": lambda: colourful().quantize(64),
    "P, colourful half visible": lambda: palette_left_visible(colourful(), (128, 128, 128)),
    "RGB": lambda: colourful(),
    "RGB JPEG": lambda: jpeg(colourful()),
    "RGBA, opaque": lambda: colourful().convert("RGBA"),
    "RGBA, colourful half visible": lambda: rgba(colourful(), left_half_mask()),
    "CMYK": lambda: colourful().convert("CMYK"),
}


@pytest.mark.parametrize("case", GRAY_CASES)
def test_gray_content_is_grayscale_in_every_mode(case: str):
    image = GRAY_CASES[case]()
    assert colour_score(image) < DEFAULT_GRAYSCALE_THRESHOLD / 2
    assert is_grayscale(image)


@pytest.mark.parametrize("case", COLOUR_CASES)
def test_colourful_content_is_not_grayscale_in_every_mode(case: str):
    image = COLOUR_CASES[case]()
    assert colour_score(image) > 10 * DEFAULT_GRAYSCALE_THRESHOLD
    assert not is_grayscale(image)


def test_gray_modes_score_zero_without_looking_at_pixels():
    assert colour_score(Image.new("L", (8, 8), 200)) == 0.0
    assert colour_score(Image.new("LA", (8, 8), (200, 0))) == 0.0
    assert colour_score(Image.new("1", (8, 8), 1)) == 0.0
    assert colour_score(Image.new("I;16", (8, 8), 40000)) == 0.0


@pytest.mark.parametrize("tint", [sepia, blue_tint], ids=["sepia", "blue"])
@pytest.mark.parametrize("compress", [False, True], ids=["png", "jpeg85"])
def test_single_tint_monochrome_is_grayscale(tint, compress: bool):
    colour = colourful()
    tinted = tint(colour)
    if compress:
        tinted = jpeg(tinted)
    assert not is_grayscale(colour)
    assert is_grayscale(tinted), colour_score(tinted)


def test_tint_strong_enough_to_clip_is_still_grayscale():
    # the sepia matrix saturates red above ~75% gray, bending the highlights' hue ~25 degrees towards yellow
    ramp = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    assert is_grayscale(sepia(ramp))


def test_uint8_wraparound_does_not_fake_colour():
    # Channels one step either side of each other near 0 and 255: uint8 differences (g - r, cb - 128) would wrap
    # to ~255 and look like saturated colour.
    rng = np.random.default_rng(0)
    base = rng.choice([0, 1, 127, 128, 254, 255], size=(H, W, 1))
    jitter = rng.integers(-1, 2, size=(H, W, 3))
    pixels = np.clip(base + jitter, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    assert colour_score(image) < 1.0
    assert is_grayscale(image)
    # the same trap in YCbCr: chroma of 127 and 129 around the neutral 128
    luma = Image.fromarray(rng.integers(0, 256, size=(H, W)).astype(np.uint8))
    chroma = [Image.fromarray(rng.choice([127, 128, 129], size=(H, W)).astype(np.uint8)) for _ in range(2)]
    assert is_grayscale(Image.merge("YCbCr", (luma, *chroma)))


def test_complementary_colours_are_not_one_tint():
    # salmon and teal: exactly opposite hues in Lab, so on one line through the neutral point, but on opposite rays
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[:, : W // 2] = (180, 128, 120)
    pixels[:, W // 2 :] = (76, 128, 136)
    assert not is_grayscale(Image.fromarray(pixels))


def test_small_muted_details_in_two_hues_on_gray_are_colour():
    # like pastel green eyes and a blush on an otherwise black-and-white picture, 1.4% of the area each: a high
    # percentile of the residual sees them, its RMS over the picture would not
    image = Image.linear_gradient("L").resize((100, 100)).convert("RGB")
    image.paste((110, 135, 110), (20, 40, 32, 52))
    image.paste((140, 105, 105), (60, 40, 72, 52))
    assert not is_grayscale(image)


def test_one_spot_colour_on_gray_counts_as_a_tint():
    # Gray plus one hue is a one-ink print (like a red-ink manga page or a red title on a black-and-white page):
    # by design it is monochrome, whatever the saturation of the ink.
    image = gray_picture().convert("RGB").resize((100, 100))
    image.paste((220, 40, 50), (40, 40, 60, 60))
    assert is_grayscale(image)


def test_small_colourful_subject_on_a_blank_canvas_is_colour():
    # a character in 0.7% of a white (or black) picture: the blank background must not dilute its colour away
    for background in ("white", "black"):
        canvas = Image.new("RGB", (W * 12, H * 12), background)
        canvas.paste(colourful(), (W * 6, H * 6))
        assert not is_grayscale(canvas), background


def test_colour_speck_on_an_empty_page_is_not_colour():
    # two 6 px coloured dots on a 400 px white page (0.05% of it): noise, a stamp, not a colour picture
    page = Image.new("RGB", (400, 400), "white")
    page.paste((230, 30, 40), (100, 100, 106, 106))
    page.paste((30, 160, 60), (300, 300, 306, 306))
    assert is_grayscale(page)


def test_threshold_is_respected():
    image = colourful()
    score = colour_score(image)
    assert is_grayscale(image, threshold=score + 1)
    assert not is_grayscale(image, threshold=score - 1)


def test_input_is_left_alone():
    image = rgba(colourful(), left_half_mask())
    before = image.tobytes()
    colour_score(image, sample_side=16)
    assert image.mode == "RGBA" and image.tobytes() == before


# Real anime faces. The calibration (bench/grayscale_calibration.py, all 974 crops) removes 1 of 971 colour crops and
# keeps none of 5826 monochrome versions at the default threshold; 3 crops of the set are monochrome themselves.
REAL_MONOCHROME = {"hakurei_reimu/face_650_84_36.png"}  # red ink on white, not R = G = B; looked at


def _require_data() -> None:
    if not ANIMEFACE.is_dir():
        pytest.skip(f"real anime face data not found at {ANIMEFACE} (shared/data/animeface-10 beside the repo)")


def _sample(step: int = 10) -> list[str]:
    _require_data()
    with (ANIMEFACE / "labels.csv").open() as handle:
        paths = sorted(row["path"] for row in csv.DictReader(handle))
    return paths[::step]  # deterministic, every character represented


def test_real_anime_faces_colour_kept_monochrome_versions_removed():
    sample = _sample()
    colour_kept, colour_total, misses = 0, 0, {"gray": [], "gray_jpeg85": [], "sepia_jpeg85": [], "blue_jpeg85": []}
    for name in sample:
        image = Image.open(ANIMEFACE / name).convert("RGB")
        pixels = np.asarray(image, dtype=np.int16)
        if name in REAL_MONOCHROME or np.abs(pixels - pixels[..., :1]).max() <= 2:
            assert is_grayscale(image), name  # a manga crop inside the colour set
        else:
            colour_total += 1
            colour_kept += not is_grayscale(image)
        versions = {
            "gray": image.convert("L"),
            "gray_jpeg85": jpeg(image.convert("L").convert("RGB")),
            "sepia_jpeg85": jpeg(sepia(image)),
            "blue_jpeg85": jpeg(blue_tint(image)),
        }
        for group, version in versions.items():
            if not is_grayscale(version):
                misses[group].append(name)
    assert len(sample) >= 95 and colour_total >= 90
    assert colour_kept >= 0.97 * colour_total, f"kept {colour_kept}/{colour_total} colour crops"
    assert misses["gray"] == [] and misses["gray_jpeg85"] == [], misses
    assert all(len(names) <= 0.01 * len(sample) for names in misses.values()), misses


@pytest.mark.parametrize(
    "name", ["hakurei_reimu/0.png", "hakurei_reimu/face_332_186_1.png", "hakurei_reimu/face_650_84_36.png"]
)
def test_real_monochrome_crops_in_the_colour_set_are_removed(name: str):
    # two gray manga crops stored as RGB, and a red-ink print: found by the calibration among the "colour" crops
    _require_data()
    assert is_grayscale(Image.open(ANIMEFACE / name))
