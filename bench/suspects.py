"""How well the review page's suspects ranking finds planted label errors, beside baselines from the same draws.

Each draw takes LABELS real animeface-10 labels, PER_LABEL faces of each under their own label, and PLANTED
faces of the next label posted under each (the label errors), then ranks every face with
`models.suspects.find_suspects` (the function the review page calls). Precision at k = the share of planted
faces among the first k, k = the number planted. Baselines, on the same faces and folds: a plain 8x4x4 HSV
colour histogram, and chance (k / n).

    .venv/bin/python bench/suspects.py --draws 5
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.suspects import find_suspects, out_of_sample_probabilities  # noqa: E402
from tests.scenes import ANIMEFACE, animeface_rows  # noqa: E402


def histogram_features(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        hsv = np.asarray(image.convert("RGB").resize((64, 64)).convert("HSV")).reshape(-1, 3)
    counts, _ = np.histogramdd(hsv, bins=(8, 4, 4), range=((0, 256),) * 3)
    return counts.ravel() / len(hsv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--labels", type=int, default=6)
    parser.add_argument("--per-label", type=int, default=25)
    parser.add_argument("--planted", type=int, default=2, help="faces of the next label planted under each label")
    args = parser.parse_args()
    from cleanlab.rank import get_label_quality_scores

    rows = animeface_rows()
    names = sorted({r["label"] for r in rows})
    ours, plain, chance, seconds = [], [], [], []
    for draw in range(args.draws):
        rng = random.Random(draw)
        labels = rng.sample(names, args.labels)
        faces, planted = [], set()
        for index, label in enumerate(labels):
            mine = sorted(r["path"] for r in rows if r["label"] == label)
            rng.shuffle(mine)
            faces += [(len(faces) + k, path, label) for k, path in enumerate(mine[:args.per_label])]
            source = sorted(r["path"] for r in rows if r["label"] == labels[(index + 1) % len(labels)])
            rng.shuffle(source)
            for path in source[-args.planted:]:  # from the end: never one of that label's own clean faces
                planted.add(len(faces))
                faces.append((len(faces), path, label))
        k = len(planted)
        started = time.perf_counter()
        report = find_suspects(ANIMEFACE, faces)
        seconds.append(time.perf_counter() - started)
        ours.append(len({s.face_id for s in report.ranked[:k]} & planted) / k)

        targets = np.array([labels.index(label) for _, _, label in faces])
        features = np.stack([histogram_features(ANIMEFACE / path) for _, path, _ in faces])
        quality = get_label_quality_scores(targets, out_of_sample_probabilities(features, targets, report.folds))
        plain.append(len(set(np.argsort(quality, kind="stable")[:k].tolist()) & planted) / k)
        chance.append(k / len(faces))
        print(f"draw {draw}: {', '.join(labels)}: ours {ours[-1]:.2f}, colour histogram {plain[-1]:.2f}, "
              f"chance {chance[-1]:.2f} ({len(faces)} faces, {k} planted, {seconds[-1]:.1f} s)")
    print(f"precision at the number planted, mean of {args.draws} draws: ours {np.mean(ours):.2f}, colour histogram "
          f"{np.mean(plain):.2f} ({np.mean(ours) / max(np.mean(plain), 1e-9):.1f}x), chance {np.mean(chance):.2f} "
          f"({np.mean(ours) / np.mean(chance):.1f}x); {np.mean(seconds):.1f} s per ranking")


if __name__ == "__main__":
    main()
