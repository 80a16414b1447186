"""Calibrating tasks.grayscale on real anime faces: colour scores of colour crops and of their monochrome versions.

For each of the 974 colour crops in shared/data/animeface-10 it scores the original and monochrome versions of it:
gray (`convert("L")`), gray as RGB saved as JPEG q85, sepia (the classic matrix) as PNG and JPEG q85, and a
blue-tinted monochrome as PNG and JPEG q85. It prints each group's score distribution, the thresholds with the best
balanced and plain accuracy (middle of the best interval), precision/recall/accuracy of is_grayscale there and at
DEFAULT_GRAYSCALE_THRESHOLD (monochrome = positive), the hardest colour crops, stress cases that are not used for the
fit (JPEG q50, scanner-like noise, a 4x upscale, the crop as a small subject on a blank canvas), and checks every
Pillow mode on synthetic images. --compare adds the single-ray baselines the wedge replaced.

A few crops of the set are themselves monochrome: the gray ones (R = G = B exactly) are found by the script, a red-ink
one was found by looking at the hardest cases (REVIEWED_MONOCHROME). They are reported apart, not counted as colour.

    .venv/bin/python bench/grayscale_calibration.py                        # about 2-3 minutes
    .venv/bin/python bench/grayscale_calibration.py --sample-side 64 --compare --save-hardest /tmp/hardest.png
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import grayscale  # noqa: E402
from tasks.grayscale import DEFAULT_GRAYSCALE_THRESHOLD, colour_score  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "animeface-10"
SEPIA = (0.393, 0.769, 0.189, 0, 0.349, 0.686, 0.168, 0, 0.272, 0.534, 0.131, 0)
BLUE = (0.55, 0.75, 1.15)  # a cyanotype-like tint of the luminance, clipped
COLOUR = "colour"
# Looked at by eye: crops of the colour set that are single-tint monochrome without being R = G = B.
REVIEWED_MONOCHROME = {"hakurei_reimu/face_650_84_36.png": "red ink on white (a one-colour print), halftoned"}
FIT_GROUPS = [COLOUR, "gray_L", "gray_jpg85", "sepia_png", "sepia_jpg85", "blue_png", "blue_jpg85"]


def jpeg(image: Image.Image, quality: int = 85) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def sepia(image: Image.Image) -> Image.Image:
    return image.convert("RGB", SEPIA)


def blue(image: Image.Image) -> Image.Image:
    luma = np.asarray(image.convert("L"), dtype=np.float64)
    return Image.fromarray(np.clip(np.round(luma[..., None] * np.array(BLUE)), 0, 255).astype(np.uint8))


def noisy(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Independent Gaussian noise per channel, like a scanner's or a phone camera's colour noise."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64) + rng.normal(0, sigma, (image.height, image.width, 3))
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def on_canvas(image: Image.Image, factor: int, colour: str = "white") -> Image.Image:
    """`image` in the middle of a blank canvas `factor` times its size: a small subject, as in a whole picture."""
    canvas = Image.new("RGB", (image.width * factor, image.height * factor), colour)
    canvas.paste(image, (image.width * (factor // 2), image.height * (factor // 2)))
    return canvas


def variants(image: Image.Image, seed: int) -> dict[str, Image.Image]:
    gray = image.convert("L")
    gray_rgb = gray.convert("RGB")
    return {
        COLOUR: image,
        "gray_L": gray,
        "gray_jpg85": jpeg(gray_rgb),
        "sepia_png": sepia(image),
        "sepia_jpg85": jpeg(sepia(image)),
        "blue_png": blue(image),
        "blue_jpg85": jpeg(blue(image)),
        # stress cases, not used for the threshold: lower JPEG quality, noise, bigger pictures, small subjects
        "colour_jpg85": jpeg(image),
        "colour_jpg50": jpeg(image, 50),
        "gray_jpg50": jpeg(gray_rgb, 50),
        "sepia_jpg50": jpeg(sepia(image), 50),
        "gray_noise3_jpg85": jpeg(noisy(gray_rgb, 3, seed)),
        "sepia_noise3_jpg85": jpeg(noisy(sepia(image), 3, seed)),
        "sepia_x4_jpg85": jpeg(sepia(image).resize((image.width * 4, image.height * 4), Image.Resampling.BICUBIC)),
        "colour_11pct_on_white": on_canvas(image, 3),
        "colour_4pct_on_white": on_canvas(image, 5),
        "colour_4pct_on_black": on_canvas(image, 5, "black"),
        "sepia_11pct_on_white_jpg85": jpeg(on_canvas(sepia(image), 3)),
        "gray_4pct_on_white_noise3_jpg85": jpeg(noisy(on_canvas(gray_rgb, 5), 3, seed)),
    }


def is_monochrome_variant(group: str) -> bool:
    return not group.startswith(COLOUR)


# Baselines for --compare: the single-ray models the wedge replaced (same downsampling and Lab chroma).
def _chroma(image: Image.Image, side: int) -> np.ndarray:
    if image.mode in ("L", "LA"):
        return np.zeros((1, 2))
    return grayscale._lab(np.asarray(grayscale._visible_rgb(image, side)).reshape(-1, 3))[1]


def mean_direction_perpendicular(image: Image.Image, side: int, percentile: float | None) -> float:
    """|chroma component perpendicular to the mean chroma direction|: its RMS (percentile None) or a percentile."""
    chroma = _chroma(image, side)
    mean = chroma.mean(axis=0)
    norm = float(np.hypot(*mean))
    unit = mean / norm if norm > 1e-9 else np.array([1.0, 0.0])
    perpendicular = np.abs(chroma @ np.array([-unit[1], unit[0]]))
    return float(np.sqrt(np.mean(perpendicular**2)) if percentile is None else np.percentile(perpendicular, percentile))


def describe(values: np.ndarray) -> str:
    q = np.percentile(values, [0, 1, 5, 50, 95, 99, 100])
    return " ".join(f"{v:7.2f}" for v in q)


def best_threshold(colour: np.ndarray, mono: np.ndarray, balanced: bool) -> tuple[float, float]:
    """Threshold with the best accuracy, balanced (mean of the two recalls) or plain: the middle of the widest run of
    best cut points, in score units. Returns (threshold, that accuracy)."""
    cuts = np.unique(np.concatenate([colour, mono]))
    candidates = np.concatenate([[cuts[0] - 1e-6], (cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + 1e-6]])
    kept = (colour[None, :] >= candidates[:, None]).sum(axis=1)
    removed = (mono[None, :] < candidates[:, None]).sum(axis=1)
    if balanced:
        accuracy = (kept / len(colour) + removed / len(mono)) / 2
    else:
        accuracy = (kept + removed) / (len(colour) + len(mono))
    best = np.flatnonzero(accuracy == accuracy.max())
    runs = np.split(best, np.flatnonzero(np.diff(best) != 1) + 1)
    widest = max(runs, key=lambda run: candidates[run[-1]] - candidates[run[0]])
    return float((candidates[widest[0]] + candidates[widest[-1]]) / 2), float(accuracy.max())


def report_at(threshold: float, colour: np.ndarray, mono: np.ndarray, label: str) -> None:
    tp = int(np.sum(mono < threshold))
    fp = int(np.sum(colour < threshold))
    fn = len(mono) - tp
    tn = len(colour) - fp
    precision = tp / (tp + fp) if tp + fp else float("nan")
    print(
        f"  {label} threshold {threshold:.3f}: precision {precision:.4f}  recall {tp / len(mono):.4f}  "
        f"accuracy {(tp + tn) / (len(colour) + len(mono)):.4f}  balanced {(tp / len(mono) + tn / len(colour)) / 2:.4f}"
        f"  | colour removed {fp}/{len(colour)}, monochrome kept {fn}/{len(mono)}"
    )


def synthetic_colour(size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A colourful picture: hue sweeping across, lightness down, a gray band in the middle."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    hue = np.stack([np.sin(2 * np.pi * (x + k / 3)) for k in range(3)], axis=-1)
    rgb = 128 + 100 * hue * (1 - 0.6 * y[..., None])
    rgb[h // 3 : h // 2] = 128
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))


def palette_with_hidden(image: Image.Image, hidden: tuple[int, int, int]) -> Image.Image:
    """`image` as P: its left half visible, its right half palette index 0 = `hidden`, made transparent."""
    quantized = image.quantize(64)
    indices = np.asarray(quantized).astype(np.uint8) + 1
    indices[:, image.width // 2 :] = 0
    result = Image.fromarray(indices, "P")
    result.putpalette(list(hidden) + quantized.getpalette()[: 3 * 255])
    result.info["transparency"] = 0
    return result


def mode_checks(threshold: float) -> None:
    colour = synthetic_colour()
    gray = colour.convert("L")
    w, h = colour.size
    left = Image.new("L", colour.size, 0)
    left.paste(255, (0, 0, w // 2, h))
    p_colour_visible = palette_with_hidden(colour, (128, 128, 128))  # colourful left half shows
    p_gray_visible = palette_with_hidden(gray.convert("RGB"), (255, 0, 0))  # red hidden, gray left half shows
    rgba_colour_hidden = Image.merge("RGBA", (*colour.split(), Image.new("L", colour.size, 0)))
    rgba_gray_shown_colour_hidden = colour.convert("RGBA")
    gray_rgb = gray.convert("RGB")
    rgba_gray_shown_colour_hidden.paste(gray_rgb.crop((0, 0, w // 2, h)), (0, 0))
    rgba_gray_shown_colour_hidden.putalpha(left)
    rgba_colour_shown = colour.convert("RGBA")
    rgba_colour_shown.putalpha(Image.eval(left, lambda v: 255 - v))  # right half visible: colourful
    cases: list[tuple[str, Image.Image, bool]] = [
        ("L gray", gray, True),
        ("LA gray, half transparent", Image.merge("LA", (gray, left)), True),
        ("P colour, no transparency", colour.quantize(64), False),
        ("P gray, no transparency", gray.convert("RGB").quantize(64), True),
        ("P colour, left half visible", p_colour_visible, False),
        ("P gray shown, red transparent", p_gray_visible, True),
        ("RGB colour", colour, False),
        ("RGB gray", gray_rgb, True),
        ("RGB sepia", sepia(colour), True),
        ("RGB blue-tinted", blue(colour), True),
        ("RGBA colourful, all transparent", rgba_colour_hidden, True),
        ("RGBA gray shown, colour hidden", rgba_gray_shown_colour_hidden, True),
        ("RGBA colour shown", rgba_colour_shown, False),
        ("CMYK from colour", colour.convert("CMYK"), False),
        ("CMYK from gray", gray_rgb.convert("CMYK"), True),
        ("RGB near 0/255, gray", Image.fromarray(np.array([[[0, 1, 0], [255, 254, 255]]] * 8, np.uint8)), True),
    ]
    print("\nPillow modes on synthetic 96x80 images (expected: True = grayscale):")
    failures = 0
    for name, image, expected in cases:
        score = colour_score(image)
        ok = (score < threshold) == expected
        failures += not ok
        print(f"  {name:34s} mode {image.mode:5s} score {score:7.2f}  grayscale {score < threshold!s:5s} "
              f"{'ok' if ok else 'WRONG'}")
    print(f"  {len(cases) - failures}/{len(cases)} as expected")


def contact_sheet(paths: list[Path], scores: list[float], target: Path) -> None:
    cell = 160
    sheet = Image.new("RGB", (cell * min(6, len(paths)), cell * ((len(paths) + 5) // 6)), "white")
    for i, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        image.thumbnail((cell, cell))
        sheet.paste(image, ((i % 6) * cell, (i // 6) * cell))
    sheet.save(target)
    print(f"  saved the hardest colour crops to {target} (row by row: {', '.join(f'{s:.2f}' for s in scores)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sample-side", type=int, default=grayscale.DEFAULT_SAMPLE_SIDE)
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    parser.add_argument("--hardest", type=int, default=12)
    parser.add_argument("--save-hardest", type=Path, help="write a contact sheet of the hardest colour crops")
    parser.add_argument("--compare", action="store_true", help="also score the single-ray baselines")
    args = parser.parse_args()

    rows = list(csv.DictReader((args.data / "labels.csv").open()))
    if args.limit:
        rows = rows[: args.limit]
    metrics: dict[str, Callable[[Image.Image], float]] = {"wedge": lambda im: colour_score(im, args.sample_side)}
    if args.compare:
        metrics["meandir_perp_rms"] = lambda im: mean_direction_perpendicular(im, args.sample_side, None)
        metrics["meandir_perp_p99"] = lambda im: mean_direction_perpendicular(im, args.sample_side, 99)

    scores: dict[str, dict[str, list[float]]] = {m: {} for m in metrics}
    manga: list[str] = []
    paths: list[Path] = []
    started = time.perf_counter()
    timed = 0.0
    for i, row in enumerate(rows):
        path = args.data / row["path"]
        image = Image.open(path).convert("RGB")
        pixels = np.asarray(image, dtype=np.int16)
        if int(np.abs(pixels - pixels[..., :1]).max()) <= 2 or row["path"] in REVIEWED_MONOCHROME:
            manga.append(row["path"])  # R = G = B, or looked at: a monochrome crop in the colour set
            continue
        paths.append(path)
        for group, version in variants(image, seed=i).items():
            for name, metric in metrics.items():
                t = time.perf_counter()
                scores[name].setdefault(group, []).append(metric(version))
                timed += time.perf_counter() - t if name == "wedge" else 0.0
    n_scored = sum(len(v) for v in scores["wedge"].values())
    print(f"{len(rows)} crops from {args.data}, sample side {args.sample_side}, {time.perf_counter() - started:.0f} s "
          f"({timed / n_scored * 1000:.1f} ms per colour_score)")
    print(f"monochrome crops in the colour set, left out of the colour group: {len(manga)}")
    for name in manga:
        score = colour_score(Image.open(args.data / name), args.sample_side)
        why = REVIEWED_MONOCHROME.get(name, "R = G = B")
        print(f"  {name}: {why}; score {score:.2f}, is_grayscale {score < DEFAULT_GRAYSCALE_THRESHOLD}")

    for name, groups in scores.items():
        arrays = {g: np.array(v) for g, v in groups.items()}
        print(f"\n== metric {name}: distribution per group (n = {len(arrays[COLOUR])} each)")
        print(f"  {'group':20s} {'min':>7s} {'p1':>7s} {'p5':>7s} {'median':>7s} {'p95':>7s} {'p99':>7s} {'max':>7s}")
        for group, values in arrays.items():
            marker = "" if group in FIT_GROUPS else "  (stress, not fitted)"
            print(f"  {group:20s} {describe(values)}{marker}")
        colour = arrays[COLOUR]
        mono = np.concatenate([arrays[g] for g in FIT_GROUPS if g != COLOUR])
        gap = colour.min() - mono.max()
        print(f"  monochrome max {mono.max():.3f}, colour min {colour.min():.3f}: "
              + (f"gap {gap:.3f}" if gap > 0 else f"overlap {-gap:.3f}")
              + f"; colour originals <= monochrome max: {int(np.sum(colour <= mono.max()))}")
        for balanced in (True, False):
            threshold, accuracy = best_threshold(colour, mono, balanced)
            label = "balanced" if balanced else "plain"
            print(f"  best {label} accuracy {accuracy:.4f} at threshold {threshold:.3f}")
            report_at(threshold, colour, mono, f"best {label}")
        if name == "wedge":
            report_at(DEFAULT_GRAYSCALE_THRESHOLD, colour, mono, "DEFAULT")
            print("  stress groups at DEFAULT: "
                  + ", ".join(f"{g} {'kept' if g.startswith(COLOUR) else 'removed'} "
                              f"{np.mean((arrays[g] >= DEFAULT_GRAYSCALE_THRESHOLD) == g.startswith(COLOUR)):.3f}"
                              for g in arrays if g not in FIT_GROUPS))

    colour = np.array(scores["wedge"][COLOUR])
    order = np.argsort(colour)[: args.hardest]
    print(f"\nhardest colour crops (lowest wedge scores; DEFAULT {DEFAULT_GRAYSCALE_THRESHOLD}):")
    for j in order:
        print(f"  {colour[j]:6.2f}  {paths[j].relative_to(args.data)}")
    if args.save_hardest:
        contact_sheet([paths[j] for j in order], [float(colour[j]) for j in order], args.save_hardest)

    mode_checks(DEFAULT_GRAYSCALE_THRESHOLD)


if __name__ == "__main__":
    main()
