"""Bad inputs to `predict` and `evaluate`: an unreadable picture is counted and skipped, never the others'
predictions; a folder with nothing to score is an error, not an accuracy of 0.0."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from flows.settings import Settings
from models.classifier import FaceClassifier, Normalization, make_normalization, resnet18
from models.inference import NoImagesToEvaluate, evaluate_folder, predict_images
from tests.imaging import image_bytes
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration


TINY = dataclasses.replace(Settings.shipped().face_params(), face_size=32)  # small crops: fast


def untrained(labels: list[str]) -> FaceClassifier:
    return FaceClassifier(resnet18(len(labels)), make_normalization(Normalization.per_image), labels).eval()


def test_predict_keeps_every_readable_picture_when_one_is_unreadable(tmp_path: Path):
    good = tmp_path / "good.png"
    good.write_bytes(image_bytes("PNG"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(image_bytes("PNG")[:200])  # truncated
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    later = tmp_path / "later.jpeg"
    later.write_bytes(image_bytes("JPEG", seed=2))

    report = predict_images(untrained(["a", "b"]), [good, broken, text, later], None, TINY,
                            tmp_path / "out", crops=True)
    written = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert written == report and [Path(item["image"]).name for item in written] == [
        "good.png", "broken.png", "notes.jpg", "later.jpeg"]
    assert [len(item["faces"]) for item in written] == [1, 0, 0, 1]
    assert [item.get("error", "")[:10] for item in written] == ["", "unreadable", "unreadable", ""]
    assert "UnidentifiedImageError" in written[2]["error"]
    assert Path(written[3]["annotated"]).exists()


def test_evaluate_counts_an_unreadable_picture_and_refuses_an_empty_folder(tmp_path: Path):
    model = untrained(["a", "b"])
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(NoImagesToEvaluate, match="no images in"):
        evaluate_folder(model, tmp_path / "empty", None, TINY, True, tmp_path / "ev")

    folder = tmp_path / "holdout"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "1.png").write_bytes(image_bytes("PNG"))
    (folder / "a" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = evaluate_folder(model, folder, None, TINY, True, tmp_path / "ev")
    assert int(result.confusion.sum()) == 1 and len(result.unreadable) == 1 and "2.png" in result.unreadable[0]

    (folder / "a" / "1.png").unlink()
    with pytest.raises(NoImagesToEvaluate, match="nothing to score.*1 unreadable"):
        evaluate_folder(model, folder, None, TINY, True, tmp_path / "ev")


def test_evaluate_an_empty_folder_exits_2_with_one_line(tmp_path: Path):
    (tmp_path / "holdout" / "miku").mkdir(parents=True)
    result = run_cli("evaluate", str(tmp_path / "holdout"), "--model", "models:/nothing@champion", "--crops",
                     env={"YOTSUBA_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "no images in" in result.stderr and "Traceback" not in result.stderr
