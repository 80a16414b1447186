"""Training and tracking: Lightning on real faces, MLflow on SQLite in a temp dir."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.settings import Settings
from flows.train import settings_params
from models.classifier import ClassifierModule, FaceClassifier, Normalization, make_normalization, resnet18
from models.data import FaceDataModule, FaceRecord, SplitConfig, assign_splits, build_cache, channel_stats
from models.training import TrainConfig, train
from tests.scenes import ANIMEFACE

pytestmark = pytest.mark.integration
needs_animeface = pytest.mark.skipif(not (ANIMEFACE / "labels.csv").exists(),
                                     reason="../shared/data/animeface-10 is not present beside the checkout")


def animeface_records(labels: int | None = None, per_label: int | None = None) -> list[FaceRecord]:
    with open(ANIMEFACE / "provenance.csv", newline="") as handle:
        sha = {row["path"]: row["sha256"] for row in csv.DictReader(handle)}
    with open(ANIMEFACE / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = sorted({r["label"] for r in rows})[:labels] if labels else None
    records, taken = [], {}
    for row in rows:
        if chosen and row["label"] not in chosen:
            continue
        if per_label and taken.get(row["label"], 0) >= per_label:
            continue
        taken[row["label"]] = taken.get(row["label"], 0) + 1
        records.append(FaceRecord(row["path"], row["label"], sha[row["path"]]))
    return records


@needs_animeface
def test_fast_dev_run(tmp_path: Path):
    import pytorch_lightning as pl

    records = animeface_records(labels=3, per_label=30)
    datamodule = FaceDataModule(ANIMEFACE, records, size=64, batch_size=8, cache_dir=tmp_path / "cache")
    datamodule.setup()
    model = FaceClassifier(resnet18(3), make_normalization(Normalization.per_image), datamodule.labels)
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(ClassifierModule(model), datamodule=datamodule)
    assert trainer.state.finished


@needs_animeface
def test_short_real_training_is_tracked_in_mlflow(tmp_path: Path):
    import mlflow
    from mlflow import MlflowClient

    records = animeface_records(labels=3, per_label=40)
    config = TrainConfig(epochs=2, batch_size=16, face_size=64, grid_every_n_epochs=1, accelerator="cpu",
                         min_per_label=10, normalization=Normalization.dataset)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    picture = tmp_path / "counts.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")  # stands for the prepare step's dataset pictures
    # the settings as the train flow passes them, two URLs with a password among them (issue 14, item 13)
    settings = Settings(_env_file=None, reddit_base_url="http://bob:s3cret@127.0.0.1:1/",
                        imgur_api_url="https://key:s3cret@imgur.example/")
    result = train("tiny", ANIMEFACE, records, config, uri, "d" * 64, dataset_pictures=[picture],
                   extra_params=settings_params(settings))

    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    run = client.get_run(result.run_id)
    for key in ("train/loss", "val/loss", "val/acc", "val/f1", "test/acc", "test/f1"):
        assert key in run.data.metrics, key
    assert len(client.get_metric_history(result.run_id, "val/loss")) == 2
    assert run.data.params["normalization"] == "dataset" and run.data.params["epochs"] == "2"
    assert run.data.params["setting.reddit_base_url"] == "http://127.0.0.1:1/"
    assert run.data.params["setting.imgur_api_url"] == "https://imgur.example/"
    assert not [key for key, value in run.data.params.items() if "s3cret" in value]
    assert run.data.tags["dataset_digest"] == "d" * 64
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest == "d" * 16
    artifacts = {a.path for folder in ("checkpoints", "predictions", "test", "dataset")
                 for a in client.list_artifacts(result.run_id, folder)}
    assert "checkpoints/best.ckpt" in artifacts
    assert {"predictions/predictions_epoch001.png", "predictions/predictions_best.png"} <= artifacts
    assert {"test/confusion_matrix.png", "test/per_label.json", "dataset/counts.png"} <= artifacts
    version = client.get_model_version_by_alias("tiny-classifier", "champion")
    assert str(version.version) == result.registered_version and result.champion

    # the model loaded back from MLflow predicts what the in-process model predicts
    loaded = mlflow.pytorch.load_model("models:/tiny-classifier@champion", map_location="cpu")
    datamodule = FaceDataModule(ANIMEFACE, records, size=64, batch_size=16, split=config.split(),
                                cache_dir=tmp_path / "cache")
    datamodule.setup()
    images = torch.stack([datamodule.datasets["test"][i][0] for i in range(len(datamodule.datasets["test"]))])
    assert images.dtype == torch.uint8  # raw RGB crops in: the normalization is inside the model
    with torch.no_grad():
        from_mlflow = loaded(images).argmax(dim=1)
    assert loaded.labels == result.labels
    local_path = client.download_artifacts(result.run_id, "checkpoints/best.ckpt", str(tmp_path))
    state = torch.load(local_path, map_location="cpu", weights_only=True)["state_dict"]
    mean, std = datamodule.train_stats()
    in_process = FaceClassifier(resnet18(3), make_normalization(Normalization.dataset, mean, std), result.labels)
    ClassifierModule(in_process).load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(in_process.eval()(images).argmax(dim=1), from_mlflow)

    # evaluate on a labelled folder of crops: the same predictions as on the test split
    from models.inference import evaluate_folder, predict_images
    from tasks.faces import FaceDetector
    from tests.scenes import CASCADE, compose_scene, load_face

    folder = tmp_path / "eval"
    test_records = datamodule.splits["test"]
    for record in test_records:
        (folder / record.label).mkdir(parents=True, exist_ok=True)
        (folder / record.label / Path(record.path).name).write_bytes((ANIMEFACE / record.path).read_bytes())
    params = dataclasses.replace(Settings.shipped().face_params(), face_size=64)
    evaluation = evaluate_folder(loaded, folder, None, params, crops=True, out_dir=tmp_path / "evaluation")
    assert evaluation.images == len(test_records) and int(evaluation.confusion.sum()) == len(test_records)
    truth = [result.labels.index(r.label) for r in test_records]
    expected = float(np.mean([t == p for t, p in zip(truth, from_mlflow.tolist(), strict=True)]))
    assert abs(evaluation.accuracy - expected) <= 1 / len(test_records) + 1e-9  # resize paths differ slightly
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert report["confusion_matrix"] == evaluation.confusion.tolist()
    assert (tmp_path / "evaluation" / "confusion_matrix.png").exists()

    # predict: faces detected in a picture are boxed and labelled
    if CASCADE.exists():
        import random

        from PIL import Image

        scene, boxes = compose_scene([load_face(r.__dict__ | {"path": r.path}) for r in test_records[:2]],
                                     random.Random(3))
        picture = tmp_path / "scene.png"
        Image.fromarray(scene).save(picture)
        report = predict_images(loaded, [picture], FaceDetector(CASCADE, params), params, tmp_path / "pred")
        assert report[0]["faces"] and all(f["label"] in result.labels for f in report[0]["faces"])
        assert Path(report[0]["annotated"]).exists()

    # a second, worse run does not take the champion alias
    worse = dataclasses.replace(config, epochs=1, lr=1e-7)
    second = train("tiny", ANIMEFACE, records, worse, uri, "d" * 64)
    assert second.registered_version == "2"
    holder = str(client.get_model_version_by_alias("tiny-classifier", "champion").version)
    assert (holder == "2") == second.champion and second.champion_reason


def test_dataset_statistics_equal_numpy(tmp_path: Path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 8, 8, 3), dtype=np.uint8)
    indices = np.arange(0, 37, 2)
    mean, std = channel_stats(images, indices, chunk=5)
    chosen = images[indices].astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, chosen.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, chosen.std(axis=(0, 1, 2)), rtol=1e-10)


def synthetic_records(count: int, labels: int = 3, start: int = 0) -> list[FaceRecord]:
    return [FaceRecord(f"faces/{i:05d}.png", f"label{i % labels}", f"{i:064x}") for i in range(start, start + count)]


def test_per_label_cap_holds_and_is_seeded():
    records = synthetic_records(300)
    capped = assign_splits(records, SplitConfig(max_per_label=20, seed=1))["train"]
    counts = {label: sum(r.label == label for r in capped) for label in ("label0", "label1", "label2")}
    assert counts == {"label0": 20, "label1": 20, "label2": 20}
    assert capped == assign_splits(records, SplitConfig(max_per_label=20, seed=1))["train"]
    assert capped != assign_splits(records, SplitConfig(max_per_label=20, seed=2))["train"]


def test_adding_images_moves_no_image_between_splits():
    before = assign_splits(synthetic_records(300), SplitConfig())
    after = assign_splits(synthetic_records(900), SplitConfig())
    where_before = {r.path: name for name, rs in before.items() for r in rs}
    where_after = {r.path: name for name, rs in after.items() for r in rs}
    assert all(where_after[path] == split for path, split in where_before.items())
    for name, fraction in (("val", 0.1), ("test", 0.1)):
        assert abs(len(after[name]) / 900 - fraction) < 0.04
        for label in ("label0", "label1", "label2"):  # stratified: each label in each split
            assert sum(r.label == label for r in after[name]) >= 15


def test_too_few_images_is_a_clear_error():
    from models.data import DatasetTooSmall

    records = synthetic_records(60) + [FaceRecord("faces/x.png", "rare", "f" * 64)]
    with pytest.raises(DatasetTooSmall, match=r"rare \(1\)"):
        assign_splits(records, SplitConfig(min_per_label=10))


def test_pretrained_weights_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from models.classifier import PretrainedWeightsUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: torchvision must download
    with pytest.raises(PretrainedWeightsUnavailable, match="resnet18"):
        resnet18(5, pretrained=True)
    assert resnet18(5, pretrained=False).fc.out_features == 5


def test_cache_is_built_once(tmp_path: Path):
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (20, 20), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    records = [FaceRecord(f"{i}.png", "a", str(i)) for i in range(4)]
    first = build_cache(tmp_path, records, 16, tmp_path / "cache")
    assert first.shape == (4, 16, 16, 3) and int(first[2, 0, 0, 0]) == 100
    (tmp_path / "0.png").unlink()  # a second build must not decode again
    assert np.array_equal(build_cache(tmp_path, records, 16, tmp_path / "cache"), first)
