"""Likely label errors: labelled faces ranked by how likely their given label is wrong.

Each face gets out-of-sample predicted probabilities: a logistic regression on cheap deterministic features
(colour histograms over a 4x4 grid and the whole face, and 8x8 pixels), cross-validated over stratified
folds, so no face is scored by a model that saw its label. cleanlab ranks them (label quality = the
out-of-sample probability of the given label) and flags the ones its confident learning counts as issues.

Measured by bench/suspects.py on real animeface-10 faces (6 random labels, 25 faces each plus 2 planted from
the next label; 10 draws): precision at the number planted 0.57, against 0.28 for a plain colour histogram
on the same folds and 0.07 for chance; about 2 s per ranking of 162 faces on one core.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

FEATURE_SIZE = 64
MAX_FOLDS = 5


@dataclass(frozen=True)
class Suspect:
    face_id: int
    given: str
    predicted: str
    given_probability: float  # the label quality: low means likely wrong
    predicted_probability: float
    issue: bool  # cleanlab's find_label_issues flags it


@dataclass
class SuspectReport:
    ranked: list[Suspect] = field(default_factory=list)  # most likely wrong first
    skipped: Counter[str] = field(default_factory=Counter)  # faces not ranked, by reason
    folds: int = 0


def face_features(rgb: np.ndarray) -> np.ndarray:
    """Hue histograms of saturated pixels plus dark and pale shares, per cell of a 4x4 grid and over the whole
    face (hair and eye colours, and where they are), and the face at 8x8. Deterministic and cheap."""
    small = cv2.resize(rgb, (FEATURE_SIZE, FEATURE_SIZE), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)  # hue 0..179
    parts = []
    cell = FEATURE_SIZE // 4
    for gy in range(4):
        for gx in range(4):
            parts.append(_hue_histogram(hsv[gy * cell:(gy + 1) * cell, gx * cell:(gx + 1) * cell], 12))
    parts.append(_hue_histogram(hsv, 30))
    parts.append(cv2.resize(small, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() / 255.0)
    return np.concatenate(parts).astype(np.float32)


def _hue_histogram(hsv: np.ndarray, bins: int) -> np.ndarray:
    pixels = hsv.reshape(-1, 3).astype(np.int32)
    saturated = pixels[:, 1] > 60
    hues = np.bincount(pixels[saturated, 0] * bins // 180, minlength=bins)[:bins]
    dark = np.sum(pixels[:, 2] < 60)
    pale = np.sum((pixels[:, 2] >= 60) & ~saturated)
    return np.concatenate([hues, [dark, pale]]).astype(np.float32) / len(pixels)


def load_features(data_dir: Path, paths: list[str], cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Features of the crops; `cache` (path -> features) spares decoding again after each correction."""
    cache = {} if cache is None else cache
    for path in paths:
        if path not in cache:
            with Image.open(data_dir / path) as image:
                cache[path] = face_features(np.asarray(image.convert("RGB")))
    return np.stack([cache[path] for path in paths])


def out_of_sample_probabilities(features: np.ndarray, targets: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Predicted probabilities of each face from a model fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Strong regularisation: the features are many and the faces few; C measured on animeface-10 (0.01 > 0.1 > 1).
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, features, targets, cv=splitter, method="predict_proba")


def find_suspects(data_dir: Path, faces: list[tuple[int, str, str]], seed: int = 0,
                  feature_cache: dict[str, np.ndarray] | None = None) -> SuspectReport:
    """Rank labelled faces (face id, crop path, given label) by how likely their label is wrong."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    report = SuspectReport()
    counts = Counter(label for _, _, label in faces)
    small = {label for label, n in counts.items() if n < 2}  # a fold needs a face of each label to learn from
    for label in small:
        report.skipped["label_with_one_face"] += counts[label]
    usable = [face for face in faces if face[2] not in small]
    labels = sorted({label for _, _, label in usable})
    if len(labels) < 2:
        report.skipped["fewer_than_two_labels"] += len(usable)
        return report
    index = {label: i for i, label in enumerate(labels)}
    targets = np.array([index[label] for _, _, label in usable])
    report.folds = min(MAX_FOLDS, min(counts[label] for label in labels))
    features = load_features(data_dir, [path for _, path, _ in usable], feature_cache)
    probabilities = out_of_sample_probabilities(features, targets, report.folds, seed)
    quality = get_label_quality_scores(targets, probabilities, method="self_confidence")
    # n_jobs=1: its default forks a process pool, which a threaded server must not do (and the result is the same)
    issues = find_label_issues(targets, probabilities, n_jobs=1)
    for i in np.argsort(quality, kind="stable"):
        predicted = int(np.argmax(probabilities[i]))
        report.ranked.append(Suspect(
            face_id=usable[i][0], given=usable[i][2], predicted=labels[predicted],
            given_probability=float(quality[i]), predicted_probability=float(probabilities[i, predicted]),
            issue=bool(issues[i])))
    return report
