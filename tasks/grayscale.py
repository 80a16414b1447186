"""Telling grayscale and manga (black-and-white or single-tint, like sepia) images from colour ones. Pure functions.

The score is the chroma that no single tint can explain:

1. Any Pillow mode is brought to RGB as it would be seen: L/LA/1/I/F are grayscale by construction (score 0);
   P/PA go through RGBA so the palette's transparency is kept; RGBA/LA/P are composited over white, so what is
   transparent counts as white (no colour) whatever RGB values hide under alpha 0; CMYK and the rest go through
   Pillow's own conversion.
2. The image is box-downsampled to sample_side x sample_side (averaging away JPEG chroma noise) and converted to
   CIE Lab in float64 (never uint8 arithmetic, which wraps around). (a, b) is each pixel's chroma vector.
3. A single tint -- gray, sepia, blue-black, any colour of ink -- puts every pixel's chroma on one ray from the
   origin: one hue, with a magnitude that grows and shrinks with luminance. Clipping bends that ray: the classic
   sepia matrix saturates red above ~75% gray, and its highlights drift ~25 degrees from orange-brown towards
   yellow; a blue tint that clips its blue drifts ~11 degrees. So the model is a wedge, a hue +/- 12 degrees.
   For every candidate hue (2 degree steps) each pixel's residual is its distance to the wedge:
   0 inside, |chroma| * sin(angle beyond the edge) beside it, |chroma| when it is more than 90 degrees away
   (the complementary hue: an orange-and-blue picture lies on one *line* through the origin but not on one ray).
4. score = min over hues of the 99th percentile of the residual, in Lab units: "1% of the picture is at least
   this far, in chroma, from the best single tint". Gray scores 0, tinted monochrome ~0-2 (JPEG's quantised
   chroma is most of that), colour anime art 3 to 70.

Why this and not the simpler alternatives, measured on 974 real anime face crops (bench/grayscale_calibration.py):
- plain chroma magnitude fails on tints (a blue monochrome has more chroma than many colour crops);
- the perpendicular spread around the mean-chroma direction (a single ray, no tolerance) leaves sepia at up to
  ~9.7 because of the highlight drift above, overlapping 1-2% of colour crops; the best single ray, ~7.7;
- a line through the origin (the chroma covariance's smaller eigenvalue) also calls complementary colours a tint;
- chroma as a function of luminance (residual within luminance bins) is fooled by flat cel colours, each at its
  own luminance, and by the steep chroma-vs-luminance slope of tints;
- a high percentile rather than the std: the colour in many anime faces is small (eyes, a ribbon, lips) on a
  near-monochrome rest (black or brown hair, pale skin), and the std averages it away;
- Lab rather than YCbCr: slightly better separation, since its chroma is closer to perceived colourfulness.
A 32 px side beat 64 on these ~160 px crops (less JPEG chroma noise survives, 7x faster); the percentile keeps
the same fraction of the area either way.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

DEFAULT_SAMPLE_SIDE = 32
HUE_TOLERANCE_DEGREES = 12.0  # half-width of the tint wedge: covers the hue drift of a tint clipped in one channel
RESIDUAL_PERCENTILE = 99.0  # the colour must cover about 1% of the picture to count
HUE_STEP_DEGREES = 2.0
# Calibrated with bench/grayscale_calibration.py: colour originals score >= 1.71 (1st percentile 3.8), their
# gray/sepia/blue-tinted versions (JPEG q85 included) <= 2.31 (99th percentile 1.7). See that script's docstring.
DEFAULT_GRAYSCALE_THRESHOLD = 2.3

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])


def _visible_rgb(image: Image.Image, side: int) -> Image.Image:
    """`image` downsampled to side x side and flattened to RGB as it is displayed: transparency over white."""
    if image.mode in ("P", "PA", "RGBa"):
        image = image.convert("RGBA")  # P: the palette's transparency becomes alpha
    elif image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV: Pillow's conversion
    # Pillow resizes RGBA with premultiplied alpha, so hidden colours do not bleed into visible pixels.
    small = image.resize((side, side), Image.Resampling.BOX)
    if small.mode == "RGBA":
        white = Image.new("RGBA", small.size, (255, 255, 255, 255))
        small = Image.alpha_composite(white, small)
    return small.convert("RGB")


def _lab_chroma(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) sRGB values 0..255 -> (N, 2) CIE Lab (a, b), D65, in float64."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    return np.stack([500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=-1)


def colour_score(image: Image.Image, sample_side: int = DEFAULT_SAMPLE_SIDE) -> float:
    """How much colour `image` has that a single tint cannot explain, in CIE Lab chroma units.

    0 for gray; about 0-2 for gray, sepia or blue-tinted monochrome even after JPEG; usually 3 to 70 for colour
    art. See the module docstring for the model and why."""
    if image.mode in _GRAY_MODES:
        return 0.0
    small = _visible_rgb(image, max(1, sample_side))
    chroma = _lab_chroma(np.asarray(small).reshape(-1, 3))
    magnitude = np.hypot(chroma[:, 0], chroma[:, 1])
    if not magnitude.any():
        return 0.0
    hue = np.arctan2(chroma[:, 1], chroma[:, 0])
    centres = np.radians(np.arange(-180.0, 180.0, HUE_STEP_DEGREES))
    off = np.abs((hue[:, None] - centres[None, :] + np.pi) % (2 * np.pi) - np.pi)  # 0..pi, pixels x hues
    beyond = np.clip(off - np.radians(HUE_TOLERANCE_DEGREES), 0.0, np.pi / 2)
    residual = magnitude[:, None] * np.sin(beyond)
    return float(np.percentile(residual, RESIDUAL_PERCENTILE, axis=0).min())


def is_grayscale(image: Image.Image, threshold: float = DEFAULT_GRAYSCALE_THRESHOLD) -> bool:
    """True for grayscale and single-tint monochrome (manga pages, sepia): colour_score below `threshold`."""
    return colour_score(image) < threshold
