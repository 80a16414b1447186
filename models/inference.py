"""Using a trained model: load it from MLflow, predict faces in pictures, evaluate on a labelled folder,
and suggest labels for the unlabelled pool. Faces are cut with the same `crop_face` as in training."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from tasks.errors import ModelNotFound
from tasks.faces import Box, FaceDetector, FaceParams, crops_for, find_faces, load_rgb
from tasks.jobs import FaceMode
from tasks.redact import redact

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
# what Pillow raises on bytes that are not a whole, sane image (UnidentifiedImageError and truncation are OSErrors)
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class NoImagesToEvaluate(ValueError):
    """`evaluate` was given a folder with nothing to score: an accuracy over nothing is not 0.0."""


def unreadable_reason(exc: BaseException) -> str:
    return f"unreadable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def load_model(uri: str, tracking_uri: str | None = None) -> torch.nn.Module:
    """A FaceClassifier from an MLflow URI (models:/<job>-classifier@champion, runs:/<id>/model, a path)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        model = mlflow.pytorch.load_model(uri, map_location="cpu")
    except (MlflowException, OSError) as exc:  # no such model, version, alias or path
        where = f" (tracking: {redact(tracking_uri)})" if tracking_uri else ""
        first = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(f"cannot load model {redact(uri)}{where}: {first}") from exc
    model.eval()
    return model


@torch.no_grad()
def classify_crops(model: torch.nn.Module, crops: list[np.ndarray], batch_size: int = 64) -> list[tuple[str, float]]:
    """(label, confidence) for each RGB uint8 crop (S, S, 3)."""
    results: list[tuple[str, float]] = []
    for start in range(0, len(crops), batch_size):
        batch = torch.from_numpy(np.stack(crops[start : start + batch_size])).permute(0, 3, 1, 2).contiguous()
        probabilities = torch.softmax(model(batch).float(), dim=1)
        confidence, index = probabilities.max(dim=1)
        results += [(model.labels[int(i)], float(c)) for i, c in zip(index, confidence, strict=True)]
    return results


@dataclass
class FacePrediction:
    box: Box
    label: str
    confidence: float


def faces_in(rgb: np.ndarray, detector: FaceDetector | None, params: FaceParams,
             crops: bool) -> list[tuple[Box, np.ndarray]]:
    """The faces of a picture as (box, crop), found and cut exactly as for training (`find_faces`, `crops_for`:
    rotated copies included, a face found tilted cut upright). `crops`: the picture is a face."""
    mode = FaceMode.crops_unchecked if crops or detector is None else FaceMode.detect
    faces = find_faces(detector, rgb, mode)  # type: ignore[arg-type]  # None only with crops_unchecked
    return [(face.box, crop) for face, crop in zip(faces, crops_for(rgb, faces, params, mode), strict=True)]


def predict_images(model: torch.nn.Module, paths: list[Path], detector: FaceDetector | None, params: FaceParams,
                   out_dir: Path, crops: bool = False) -> list[dict[str, Any]]:
    """Annotated copies (boxes and labels) of each picture in out_dir, and the predictions as JSON. A picture
    that cannot be read gets an `error` entry instead of faces: the others are still predicted and written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = []
    for path in paths:
        try:
            rgb = load_rgb(path)
        except UNREADABLE as exc:
            report.append({"image": str(path), "annotated": None, "faces": [], "error": unreadable_reason(exc)})
            continue
        found = faces_in(rgb, detector, params, crops)
        labels = classify_crops(model, [crop for _, crop in found]) if found else []
        predictions = [FacePrediction(box, label, conf) for (box, _), (label, conf) in zip(found, labels, strict=True)]
        annotated = Image.fromarray(rgb)
        draw = ImageDraw.Draw(annotated)
        for p in predictions:
            x, y, w, h = p.box
            draw.rectangle([x, y, x + w, y + h], outline=(255, 40, 40), width=max(2, w // 40))
            draw.text((x + 3, max(0, y - 12)), f"{p.label} {p.confidence:.0%}", fill=(255, 40, 40))
        target = out_dir / f"{path.stem}.annotated.png"
        annotated.save(target)
        report.append({"image": str(path), "annotated": str(target),
                       "faces": [{"box": list(p.box), "label": p.label, "confidence": round(p.confidence, 4)}
                                 for p in predictions]})
    (out_dir / "predictions.json").write_text(json.dumps(report, indent=2))
    return report


@dataclass
class Evaluation:
    accuracy: float
    macro_f1: float
    confusion: np.ndarray
    labels: list[str]
    images: int
    no_face: int
    unknown_labels: list[str]
    unreadable: list[str] = field(default_factory=list)  # "path: reason", skipped and counted


def labelled_folder(directory: Path) -> list[tuple[Path, str]]:
    """DIR/<label>/<images>. Raises NoImagesToEvaluate when there is no such image."""
    if not directory.is_dir():
        raise NoImagesToEvaluate(f"{directory} is not a folder: evaluate needs DIR/<label>/<images>")
    items = [(path, label_dir.name) for label_dir in sorted(p for p in directory.iterdir() if p.is_dir())
             for path in sorted(label_dir.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise NoImagesToEvaluate(
            f"no images in {directory}: evaluate needs DIR/<label>/<images> (one folder per label, "
            f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return items


def evaluate_folder(model: torch.nn.Module, directory: Path, detector: FaceDetector | None, params: FaceParams,
                    crops: bool, out_dir: Path, on_image: Callable[[], None] | None = None) -> Evaluation:
    """Accuracy and macro-F1 over DIR/<label>/images (the largest face of each picture when detecting);
    writes confusion_matrix.png and evaluation.json to out_dir."""
    from models.callbacks import confusion_matrix_png, per_label_table

    labels = list(model.labels)
    index = {label: i for i, label in enumerate(labels)}
    items = labelled_folder(directory)
    unknown = sorted({label for _, label in items if label not in index})
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    no_face = 0
    unreadable: list[str] = []
    for path, label in items:
        if on_image:
            on_image()
        if label not in index:
            continue
        try:
            rgb = load_rgb(path)
        except UNREADABLE as exc:
            unreadable.append(f"{path}: {unreadable_reason(exc)}")
            continue
        found = faces_in(rgb, detector, params, crops)
        if not found:
            no_face += 1
            continue
        _, crop = max(found, key=lambda f: f[0][2] * f[0][3])
        predicted, _ = classify_crops(model, [crop])[0]
        matrix[index[label], index[predicted]] += 1
    total = int(matrix.sum())
    if total == 0:
        raise NoImagesToEvaluate(
            f"nothing to score in {directory}: {len(items)} images; folders the model has no label for: "
            f"{', '.join(unknown) or 'none'}; {no_face} without a face; {len(unreadable)} unreadable "
            f"(the model's labels: {', '.join(labels)})")
    accuracy = float(np.trace(matrix) / total)
    table = per_label_table(matrix, labels)
    present = [row for row in table if row["support"]]
    macro_f1 = float(np.mean([row["f1"] for row in present])) if present else 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion_matrix_png(matrix, labels, out_dir / "confusion_matrix.png", f"{directory.name}: confusion matrix")
    (out_dir / "evaluation.json").write_text(json.dumps({
        "accuracy": accuracy, "macro_f1": macro_f1, "images": len(items), "evaluated": total, "no_face": no_face,
        "unreadable": unreadable, "unknown_labels": unknown, "labels": labels, "confusion_matrix": matrix.tolist(),
        "per_label": table,
    }, indent=2))
    return Evaluation(accuracy, macro_f1, matrix, labels, len(items), no_face, unknown, unreadable)


def suggest_labels(model: torch.nn.Module, data_dir: Path, pool: list[tuple[int, str, str]]) -> list[dict[str, Any]]:
    """Suggested labels for the unlabelled pool (face id, crop path, the label its image was found for)."""
    crops = []
    for _, path, _ in pool:
        with Image.open(data_dir / path) as image:
            crops.append(np.asarray(image.convert("RGB")))
    predictions = classify_crops(model, crops) if crops else []
    return [{"face_id": face_id, "path": path, "found_for": found_for, "suggested": label,
             "confidence": round(confidence, 4)}
            for (face_id, path, found_for), (label, confidence) in zip(pool, predictions, strict=True)]
