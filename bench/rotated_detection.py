"""Detection with rotated copies against the cascade alone, on scenes with tilted faces.

Scenes are composed from the real faces of ../shared/data/animeface-10 (tests/scenes.py: three faces on a
900x640 canvas), each face tilted by a random angle of up to --max-angle degrees (30), and as a check the
same number of scenes with upright faces. On the same scenes, in this run:
- the cascade alone (dataclasses.replace(Settings.shipped().face_params(), rotations=())): what detection was before;
- the shipped detection (Settings.shipped().face_params(): the picture and copies rotated by -20 and +20 degrees, boxes
  mapped back and merged), through `FaceDetector.detect_faces`, the function prepare and predict use.
A face is found when a box matches its planted box (tests.scenes.matches: centre inside, side plausible);
every other box is a false box. Prints recall, false boxes per scene and milliseconds per scene.

    .venv/bin/python bench/rotated_detection.py [--scenes 100] [--max-angle 30]
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
from tasks.faces import FaceDetector  # noqa: E402
from tests.scenes import ANIMEFACE, CASCADE, animeface_rows, compose_scene, load_face, matches  # noqa: E402

Scene = tuple[np.ndarray, list[tuple[int, int, int, int]]]


def tilted_scenes(count: int, max_angle: float, seed: int = 1) -> list[Scene]:
    rows = animeface_rows()
    rng = random.Random(seed)
    rng.shuffle(rows)
    return [compose_scene([load_face(rows[(3 * i + k) % len(rows)]) for k in range(3)], rng, max_angle=max_angle)
            for i in range(count)]


def score(detector: FaceDetector, scenes: list[Scene]) -> dict[str, float]:
    """Recall, false boxes per scene, milliseconds per scene."""
    planted = hits = false = 0
    started = time.perf_counter()
    for scene, boxes in scenes:
        found = detector.detect(scene)
        planted += len(boxes)
        hits += sum(any(matches(d, b) for d in found) for b in boxes)
        false += sum(not any(matches(d, b) for b in boxes) for d in found)
    seconds = time.perf_counter() - started
    return {"recall": hits / planted, "false": false / len(scenes), "ms": 1000 * seconds / len(scenes),
            "planted": planted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--max-angle", type=float, default=30.0)
    args = parser.parse_args()
    if not ANIMEFACE.exists() or not CASCADE.exists():
        sys.exit("needs ../shared/data/animeface-10 and ../shared/cascade beside the checkout")
    cv2.setNumThreads(1)
    shipped = Settings.shipped().face_params()
    variants = {"cascade alone": dataclasses.replace(Settings.shipped().face_params(), rotations=()),
                f"rotated copies {', '.join(f'{a:+g}' for a in shipped.rotations)} (shipped)": shipped}
    sets = {f"faces tilted by up to {args.max_angle:g} degrees": tilted_scenes(args.scenes, args.max_angle),
            "upright faces": tilted_scenes(args.scenes, 0.0, seed=2)}
    for title, scenes in sets.items():
        results = {name: score(FaceDetector(CASCADE, params), scenes) for name, params in variants.items()}
        base = results["cascade alone"]
        print(f"{len(scenes)} scenes of 900x640, {base['planted']} {title}:")
        for name, r in results.items():
            print(f"  {name}: recall {r['recall']:.3f} ({100 * (r['recall'] - base['recall']):+.1f} points), "
                  f"false boxes per scene {r['false']:.3f}, {r['ms']:.0f} ms per scene "
                  f"({r['ms'] / base['ms']:.2f}x the cascade alone)", flush=True)


if __name__ == "__main__":
    main()
