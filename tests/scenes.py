"""Scenes composed from real face crops at known boxes, for measuring detection; and pictures without a
face (windows of those scenes, windows cutting through a face, drawings) for measuring false keeps."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ANIMEFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "animeface-10"
CASCADE = Path(__file__).resolve().parents[2] / "shared" / "cascade" / "lbpcascade_animeface.xml"


def animeface_rows() -> list[dict[str, str]]:
    with open(ANIMEFACE / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


Box = tuple[int, int, int, int]


def compose_scene(faces: list[np.ndarray], rng: random.Random, size: tuple[int, int] = (900, 640),
                  pad_fraction: float = 0.25, max_angle: float = 0.0) -> tuple[np.ndarray, list[Box]]:
    """Paste each RGB face crop (with a replicated border, as the hair and body around a face would be)
    at a random non-overlapping place and scale on a smooth background, tilted by a random angle of at
    most `max_angle` degrees either way. Returns the scene and, for each face, the box of the original
    crop in scene coordinates (upright: a tilted face's box has the same centre and side)."""
    width, height = size
    gradient = np.linspace(0, 1, width)[None, :, None] * np.array(rng.sample(range(60, 255), 3))[None, None, :]
    scene = (gradient + np.linspace(0, 1, height)[:, None, None] * 60).clip(0, 255).astype(np.uint8)
    scene = np.broadcast_to(scene, (height, width, 3)).copy()
    boxes: list[tuple[int, int, int, int]] = []
    for face in faces:
        for _attempt in range(50):
            side = rng.randint(110, 200)
            pad = int(side * pad_fraction)
            total = side + 2 * pad
            x, y = rng.randint(0, width - total), rng.randint(0, height - total)
            box = (x + pad, y + pad, side, side)
            if all(_apart(box, other, pad * 2) for other in boxes):
                resized = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
                padded = cv2.copyMakeBorder(resized, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
                if max_angle:
                    matrix = cv2.getRotationMatrix2D((total / 2, total / 2), rng.uniform(-max_angle, max_angle), 1.0)
                    padded = cv2.warpAffine(padded, matrix, (total, total), flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REPLICATE)
                scene[y : y + total, x : x + total] = padded
                boxes.append(box)
                break
    return scene, boxes


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


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    return (a[0] + a[2] + gap <= b[0] or b[0] + b[2] + gap <= a[0] or
            a[1] + a[3] + gap <= b[1] or b[1] + b[3] + gap <= a[1])


def matches(detected: tuple[int, int, int, int], planted: tuple[int, int, int, int]) -> bool:
    """A detection is a hit when its centre lies inside the planted crop and its size is plausible."""
    dx, dy, dw, dh = detected
    px, py, pw, ph = planted
    cx, cy = dx + dw / 2, dy + dh / 2
    return px <= cx <= px + pw and py <= cy <= py + ph and 0.3 * pw <= dw <= 1.6 * pw


def load_face(row: dict[str, str]) -> np.ndarray:
    with Image.open(ANIMEFACE / row["path"]) as image:
        return np.asarray(image.convert("RGB"))
