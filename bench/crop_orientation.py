"""Which crop trains better for a face found only in a rotated copy: cut from the picture as it is (the
mapped-back box, axis-aligned) or cut upright from the rotated copy (what `crop_face` does with an angle)?

Half of ../shared/data/animeface-10 (every other row) is pasted upright into composed scenes and cut at
the planted boxes: the training crops. A small CNN learns them with the project's augmentation
(models.classifier.augment: rotation up to 11.5 degrees, scale, shift, flip, colour). The other half is
pasted into scenes tilted by up to 30 degrees, `FaceDetector.detect_faces` runs with the rotated copies,
and every face it finds only in a rotated copy is cut both ways and classified by the same network.
Prints both accuracies and how many faces only one of the two gets right.

    .venv/bin/python bench/crop_orientation.py [--repeats 3] [--epochs 40] [--size 64]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.settings import Settings  # noqa: E402
from models.classifier import augment  # noqa: E402
from tasks.faces import FaceDetector, crop_face  # noqa: E402
from tests.scenes import ANIMEFACE, CASCADE, animeface_rows, compose_scene, load_face, matches  # noqa: E402


def small_cnn(classes: int) -> nn.Module:
    def block(inputs: int, outputs: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 128), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="tilted scenes per test face")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    if not ANIMEFACE.exists() or not CASCADE.exists():
        sys.exit("needs ../shared/data/animeface-10 and ../shared/cascade beside the checkout")
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    rows = animeface_rows()
    rng = random.Random(5)
    rng.shuffle(rows)
    labels = sorted({row["label"] for row in rows})
    index = {label: i for i, label in enumerate(labels)}
    train_rows, test_rows = rows[::2], rows[1::2]

    crops, targets = [], []
    for start in range(0, len(train_rows) - 2, 3):
        group = train_rows[start : start + 3]
        scene, boxes = compose_scene([load_face(row) for row in group], rng)
        if len(boxes) == 3:
            for row, box in zip(group, boxes, strict=True):
                crops.append(crop_face(scene, box, 0.2, args.size))
                targets.append(index[row["label"]])
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(targets)
    network = small_cnn(len(labels))
    optimizer = torch.optim.AdamW(network.parameters(), 3e-3, weight_decay=0.05)
    steps = args.epochs * ((len(y) + 31) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
    started = time.perf_counter()
    for _ in range(args.epochs):
        network.train()
        order = torch.randperm(len(y))
        for batch in range(0, len(y), 32):
            chosen = order[batch : batch + 32]
            loss = functional.cross_entropy(network((augment(x[chosen]) - 0.5) / 0.25), y[chosen],
                                            label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    print(f"trained {args.epochs} epochs on {len(y)} upright crops in {time.perf_counter() - started:.0f} s")
    network.eval()

    @torch.no_grad()
    def predict(images: list[np.ndarray]) -> np.ndarray:
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        return network((batch - 0.5) / 0.25).argmax(1).numpy()

    detector = FaceDetector(CASCADE, Settings.shipped().face_params())
    as_is, upright, truth, found_upright = [], [], [], 0
    for _ in range(args.repeats):
        for start in range(0, len(test_rows) - 2, 3):
            group = test_rows[start : start + 3]
            scene, boxes = compose_scene([load_face(row) for row in group], rng, max_angle=30.0)
            if len(boxes) != 3:
                continue
            for face in detector.detect_faces(scene):
                hit = [k for k, box in enumerate(boxes) if matches(face.box, box)]
                if not hit:
                    continue
                if not face.angle:
                    found_upright += 1
                    continue
                as_is.append(crop_face(scene, face.box, 0.2, args.size))
                upright.append(crop_face(scene, face.box, 0.2, args.size, face.angle))
                truth.append(index[group[hit[0]]["label"]])
    expected = np.array(truth)
    right_as_is, right_upright = predict(as_is) == expected, predict(upright) == expected
    print(f"{found_upright} faces found in the picture as it is; {len(truth)} found only in a rotated copy:")
    print(f"  cut from the picture as it is: accuracy {right_as_is.mean():.3f}")
    print(f"  cut upright from the rotated copy (shipped): accuracy {right_upright.mean():.3f}")
    print(f"  right only when cut as it is: {int((right_as_is & ~right_upright).sum())}; "
          f"right only when cut upright: {int((right_upright & ~right_as_is).sum())}")


if __name__ == "__main__":
    main()
