"""Telling grayscale and manga (black-and-white or single-tint, like sepia) images from colour ones. Pure functions.

The score is the chroma that no single tint can explain:

1. Any Pillow mode is brought to RGB as it would be seen: 1/L/LA/I/F are grayscale by construction (score 0);
   P/PA go through RGBA so the palette's transparency is kept; RGBA (and P) are composited over white, so what is
   transparent counts as white whatever RGB values hide under alpha 0; CMYK and the rest go through Pillow's own
   conversion.
2. The image is box-downsampled to sample_side x sample_side (averaging away JPEG chroma noise) and converted to
   CIE Lab in float64 (never uint8 arithmetic, which wraps around). (a*, b*) is each pixel's chroma vector.
3. A single tint -- gray, sepia, blue-black, any colour of ink -- puts every pixel's chroma on one ray from the
   origin: one hue, with a magnitude that grows and shrinks with luminance. The ray bends: the classic sepia matrix
   saturates red above ~75% gray and its highlights drift ~25 degrees from orange-brown towards yellow; a blue tint
   that clips its blue drifts ~11 degrees; an ink mixed with white paper (or with its neighbours by downsampling)
   drifts 15-18 degrees in Lab, red towards pink. So the model is a wedge: one hue +/- 12 degrees. For every
   candidate hue (2 degree steps) each pixel's residual is its distance to the wedge: 0 inside, |chroma| *
   sin(angle beyond the edge) beside it, |chroma| when more than 90 degrees beyond (complementary hues lie on one
   *line* through the origin, but not on one ray).
4. Blank background -- near-neutral (chroma < 4) and near-white or near-black, transparent areas included -- is
   left out, so a small character on a white canvas is judged on itself; the rest counts as at least a quarter of
   the picture, so a coloured speck on an empty page is still no colour picture.
5. score = min over hues of the 99th percentile of the residual, in Lab units: "1% of the subject is at least this
   far, in chroma, from the best single tint".

Measured with bench/grayscale_calibration.py on 971 real colour anime face crops and gray, sepia and blue-tinted
versions of each (PNG and JPEG q85): colour scores 1.87 to 74 (1st percentile 4.6, median 25.5); monochrome 0 to
2.34 (gray exactly 0; what sepia and blue keep is mostly JPEG's quantised chroma). Why this and not the simpler
alternatives (the bench's --compare, or exploration on the same data):
- plain chroma magnitude fails on tints: a blue monochrome has more chroma than a third of the colour crops;
- the perpendicular spread around the mean-chroma direction (one ray, no tolerance) leaves sepia at up to 9.5 (its
  99th percentile) or 3.9 (its RMS), because of the bending above: 12 or 48 colour crops score at or below the worst
  monochrome version, best balanced accuracy 0.994 or 0.981, against 1 crop and 0.9995 here; the best single ray
  without tolerance still left sepia JPEGs at 6.3;
- a line through the origin (the chroma covariance's smaller eigenvalue) calls complementary colours a tint;
- chroma as a function of luminance (residual within luminance bins) is fooled by flat cel colours, each at its
  own luminance, and by the steep chroma-against-luminance slope of tints (sepia scored up to 21 that way);
- a high percentile rather than the RMS: on these crops the RMS of the same residual separated as well, but the
  percentile means an area (colour must cover ~1% of the subject), which is what lets small subjects, small
  coloured details (eyes, a blush) and the background rule above work; it also held up better on q50 JPEGs;
- Lab rather than YCbCr with the same wedge: balanced accuracy 0.999 against 0.996;
- 32 px rather than 64 on these ~160 px crops: less JPEG chroma noise survives (1 colour crop at or below the worst
  monochrome version instead of 3, best balanced accuracy 0.9995 against 0.9985) and it is 3-4x faster (5-7 ms
  an image). The score's scale depends on sample_side: DEFAULT_GRAYSCALE_THRESHOLD is for the default one.
Known blind spots: gray plus one spot colour (a red title on a black-and-white page) is a single tint by design;
pictures in warm colours only (brown hair, skin, a red bow) score low, since red-to-brown spans little more than the
wedge; most of the hardest colour crops are of that kind.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

DEFAULT_SAMPLE_SIDE = 32
HUE_TOLERANCE_DEGREES = 12.0  # half-width of the tint wedge: a clipped tint's or an ink-on-white's hue drift
RESIDUAL_PERCENTILE = 99.0  # the colour must cover about 1% of the subject to count
HUE_STEP_DEGREES = 2.0
# Background left out of the percentile: near-neutral (chroma < 4) and near-white (L* > 97) or near-black (L* < 3);
# the subject counts as at least a quarter of the picture.
BACKGROUND_MAX_CHROMA = 4.0
BACKGROUND_WHITE_L = 97.0
BACKGROUND_BLACK_L = 3.0
MIN_SUBJECT_FRACTION = 0.25
# Calibrated with bench/grayscale_calibration.py on 971 colour crops and 5826 gray, sepia and blue-tinted versions of
# them (PNG and JPEG q85): colour scores 1.87 to 74 (1st percentile 4.6), monochrome 0 to 2.34. One colour crop is
# below the monochrome maximum; the next is at 2.65. The best balanced and plain accuracy are both at the middle of
# that gap, 2.49: 1 colour crop removed (0.1%), no monochrome kept. Rounded to 2.5.
DEFAULT_GRAYSCALE_THRESHOLD = 2.5

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


def _lab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) sRGB values 0..255 -> CIE Lab (D65) in float64: lightness L* (N,) and chroma (a*, b*) (N, 2)."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    return 116 * f[:, 1] - 16, np.stack([500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=-1)


def colour_score(image: Image.Image, sample_side: int = DEFAULT_SAMPLE_SIDE) -> float:
    """How much colour `image` has that a single tint cannot explain, in CIE Lab chroma units.

    0 for gray; 0 to about 2.3 for sepia or blue-tinted monochrome, JPEG q85 included; usually 5 to 75 for colour
    anime art (median 25). See the module docstring for the model and why."""
    if image.mode in _GRAY_MODES:
        return 0.0
    small = _visible_rgb(image, max(1, sample_side))
    lightness, chroma = _lab(np.asarray(small).reshape(-1, 3))
    magnitude = np.hypot(chroma[:, 0], chroma[:, 1])
    # Blank white (or black) background, transparent areas included, would dilute a small subject's colour below the
    # 1%: it is left out, down to a floor, so that a speck on an empty page still does not count.
    blank = (lightness > BACKGROUND_WHITE_L) | (lightness < BACKGROUND_BLACK_L)
    subject = ~(blank & (magnitude < BACKGROUND_MAX_CHROMA))
    floor = int(np.ceil(MIN_SUBJECT_FRACTION * len(magnitude)))
    if not magnitude[subject].any():
        return 0.0
    residual = magnitude[subject, None].astype(np.float32) * _beyond_wedge(chroma[subject], magnitude[subject])
    if len(residual) < floor:  # counted as uncoloured pixels
        residual = np.concatenate([residual, np.zeros((floor - len(residual), residual.shape[1]), residual.dtype)])
    return float(_column_percentile(residual, RESIDUAL_PERCENTILE).min())


def _beyond_wedge(chroma: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """sin(clip(angle(pixel hue, wedge centre) - tolerance, 0, pi/2)) for every pixel x candidate hue.

    Computed from dot and cross products of unit vectors, sin(a - t) = sin a cos t - cos a sin t, instead of
    wrapping angles with a float modulo and taking sines: the same numbers (to rounding), 4x faster."""
    # float32: this matrix (pixels x hues) is the cost; its rounding (1e-6) is far below the threshold's margin
    unit = (chroma / np.where(magnitude > 0, magnitude, 1.0)[:, None]).astype(np.float32)
    centres = np.radians(np.arange(-180.0, 180.0, HUE_STEP_DEGREES)).astype(np.float32)
    cos_c, sin_c = np.cos(centres)[None, :], np.sin(centres)[None, :]
    cos_off = unit[:, :1] * cos_c + unit[:, 1:] * sin_c  # cos of the angle to each centre
    sin_off = np.abs(unit[:, 1:] * cos_c - unit[:, :1] * sin_c)  # its sine, 0..1 (the angle is 0..pi)
    tolerance = np.radians(HUE_TOLERANCE_DEGREES)
    inside = cos_off >= np.cos(tolerance)  # within the wedge: no residual
    far = cos_off <= -np.sin(tolerance)  # more than 90 degrees beyond its edge: the whole chroma
    cos_t, sin_t = np.float32(np.cos(tolerance)), np.float32(np.sin(tolerance))
    return np.where(inside, np.float32(0.0), np.where(far, np.float32(1.0), sin_off * cos_t - cos_off * sin_t))


def _column_percentile(values: np.ndarray, percentile: float) -> np.ndarray:
    """np.percentile(values, percentile, axis=0) with its default linear interpolation, exactly, but from a
    partial partition instead of a sort: this is most of colour_score's cost, paid once per stored image."""
    position = (len(values) - 1) * percentile / 100.0
    lower = int(np.floor(position))
    upper = min(lower + 1, len(values) - 1)
    parted = np.partition(values, [lower, upper], axis=0)
    low, high = parted[lower], parted[upper]
    return low + (high - low) * (position - lower)


def is_grayscale(image: Image.Image, threshold: float = DEFAULT_GRAYSCALE_THRESHOLD) -> bool:
    """True for grayscale and single-tint monochrome (manga pages, sepia): colour_score below `threshold`."""
    return colour_score(image) < threshold
