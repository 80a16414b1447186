"""Scenes composed from real face crops at known boxes, for measuring detection."""

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


def compose_scene(faces: list[np.ndarray], rng: random.Random, size: tuple[int, int] = (900, 640),
                  pad_fraction: float = 0.25, max_angle: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
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
