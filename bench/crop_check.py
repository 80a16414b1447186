"""The check of `faces: crops` sources: how many real face crops it keeps, and how many non-faces it keeps.

Kept: the 974 real crops of ../shared/data/animeface-10 through `FaceDetector.detect_in_crop` (the path
prepare takes for a `faces: crops` source). False keeps: pictures that hold no face, the same number of
them, of three kinds: windows cut from composed scenes (tests/scenes.py) that miss every planted face but
take in the hair-coloured streaks around it, windows that cut through a face (a quarter to a half of its
box), and drawn pictures (shapes, lines, noise on a background).
Variants, all measured in this run: the cascade on the padded crop as it was (upright only, any size),
and with rotated copies and the rules for a crop (its face large, and inside it).

    .venv/bin/python bench/crop_check.py [--limit N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.faces import FaceDetector, FaceParams  # noqa: E402
from tests.scenes import ANIMEFACE, CASCADE, animeface_rows, compose_scene, load_face  # noqa: E402


def scene_backgrounds(count: int, seed: int = 0) -> list[np.ndarray]:
    """Windows of composed scenes (face-crop sized, 100-250 px) that overlap no planted face box."""
    rows, rng, out = animeface_rows(), random.Random(seed), []
    while len(out) < count:
        scene, boxes = compose_scene([load_face(row) for row in rng.sample(rows, 3)], rng)
        height, width = scene.shape[:2]
        for _ in range(40):
            side = rng.randint(100, 250)
            x, y = rng.randint(0, width - side), rng.randint(0, height - side)
            if all(x + side <= bx or bx + bw <= x or y + side <= by or by + bh <= y for bx, by, bw, bh in boxes):
                out.append(scene[y : y + side, x : x + side].copy())
                if len(out) == count or len(out) % 4 == 0:
                    break
    return out


def partial_faces(count: int, seed: int = 2) -> list[np.ndarray]:
    """Windows of composed scenes that cut through a planted face, holding a quarter to a half of its box:
    an edge of hair, an eye, a chin; not a face crop."""
    rows, rng, out = animeface_rows(), random.Random(seed), []
    while len(out) < count:
        scene, boxes = compose_scene([load_face(row) for row in rng.sample(rows, 3)], rng)
        height, width = scene.shape[:2]
        for bx, by, bw, bh in boxes:
            for _ in range(40):
                side = rng.randint(bw // 2, bw)
                x, y = rng.randint(max(0, bx - side), min(width - side, bx + bw)), \
                    rng.randint(max(0, by - side), min(height - side, by + bh))
                inter = max(0, min(x + side, bx + bw) - max(x, bx)) * max(0, min(y + side, by + bh) - max(y, by))
                if 0.25 <= inter / (bw * bh) <= 0.5:
                    out.append(scene[y : y + side, x : x + side].copy())
                    break
            if len(out) == count:
                break
    return out


def drawings(count: int, seed: int = 1) -> list[np.ndarray]:
    """Shapes, lines and noise in random colours: pictures with edges and blobs but no face."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        side = int(rng.integers(120, 260))
        image = np.full((side, side, 3), rng.integers(0, 256, 3), np.uint8)
        for _ in range(int(rng.integers(3, 12))):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            kind = rng.integers(0, 3)
            centre = tuple(int(c) for c in rng.integers(0, side, 2))
            if kind == 0:
                axes = tuple(int(a) for a in rng.integers(5, side // 2, 2))
                cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
            elif kind == 1:
                cv2.line(image, centre, tuple(int(c) for c in rng.integers(0, side, 2)), colour,
                         int(rng.integers(1, 8)))
            else:
                cv2.circle(image, centre, int(rng.integers(3, side // 6)), colour, -1)
        if rng.random() < 0.5:
            image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
        out.append(image)
    return out


VARIANTS = {
    "padded, upright only, any face (before)": FaceParams(rotations=(), crop_min_face_fraction=0.0,
                                                          crop_min_inside=0.0),
    "padded, rotated copies, any face": FaceParams(crop_min_face_fraction=0.0, crop_min_inside=0.0),
    "padded, upright only, face >= 0.4 of the crop and >= 80% inside": FaceParams(rotations=()),
    "padded, rotated copies, face >= 0.4 of the crop and >= 80% inside (shipped)": FaceParams(),
}


def measure(params: FaceParams, faces: list[np.ndarray], others: dict[str, list[np.ndarray]]) -> dict[str, float]:
    detector = FaceDetector(CASCADE, params)
    started = time.perf_counter()
    kept = sum(bool(detector.detect_in_crop(face)) for face in faces)
    seconds = time.perf_counter() - started
    result = {"kept": kept / len(faces), "ms": 1000 * seconds / len(faces)}
    for name, images in others.items():
        result[name] = sum(bool(detector.detect_in_crop(image)) for image in images) / len(images)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="only the first N crops (every label kept)")
    args = parser.parse_args()
    if not ANIMEFACE.exists() or not CASCADE.exists():
        sys.exit("needs ../shared/data/animeface-10 and ../shared/cascade beside the checkout")
    cv2.setNumThreads(1)
    rows = animeface_rows()
    if args.limit:
        rows = random.Random(0).sample(rows, args.limit)
    faces = [load_face(row) for row in rows]
    others = {"scene windows": scene_backgrounds(len(faces)), "partial faces": partial_faces(len(faces)),
              "drawings": drawings(len(faces))}
    print(f"{len(faces)} real face crops; non-faces, {len(faces)} of each: " + ", ".join(others))
    for name, params in VARIANTS.items():
        r = measure(params, faces, others)
        print(f"  {name}: keeps {r['kept']:.1%} of face crops; false keeps: "
              + ", ".join(f"{kind} {r[kind]:.1%}" for kind in others) + f"; {r['ms']:.0f} ms per crop", flush=True)


if __name__ == "__main__":
    main()
