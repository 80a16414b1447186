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
import dataclasses
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.settings import Settings  # noqa: E402
from tasks.faces import FaceDetector, FaceParams  # noqa: E402
from tests.scenes import (  # noqa: E402
    ANIMEFACE,
    CASCADE,
    animeface_rows,
    drawings,
    load_face,
    partial_faces,
    scene_backgrounds,
)

SHIPPED = Settings.shipped().face_params()
VARIANTS = {
    "padded, upright only, any face (before)": dataclasses.replace(SHIPPED, rotations=(), crop_min_face_fraction=0.0,
                                                                   crop_min_inside=0.0),
    "padded, rotated copies, any face": dataclasses.replace(SHIPPED, crop_min_face_fraction=0.0, crop_min_inside=0.0),
    "padded, upright only, face >= 0.4 of the crop and >= 80% inside": dataclasses.replace(SHIPPED, rotations=()),
    "padded, rotated copies, face >= 0.4 of the crop and >= 80% inside (shipped)": SHIPPED,
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
