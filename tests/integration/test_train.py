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


def settings_config() -> TrainConfig:
    """The shipped defaults (the Settings fields), for tests to replace what they need."""
    return Settings(_env_file=None).train_config()


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
    # a validation split however small (min_val_faces 0), so that the val path runs; min_steps 1: 2 epochs
    config = dataclasses.replace(settings_config(), epochs=2, batch_size=16, face_size=64, grid_every_n_epochs=1,
                                 accelerator="cpu", min_per_label=10, normalization=Normalization.dataset,
                                 min_steps=1, min_val_faces=0, min_test_faces=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    picture = tmp_path / "counts.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")  # stands for the prepare step's dataset pictures
    # the settings as the train flow passes them, two URLs with a password among them (issue 14, item 13)
    settings = Settings(_env_file=None, reddit_base_url="http://bob:s3cret@127.0.0.1:1/",
                        imgur_api_url="https://key:s3cret@imgur.example/")
    work = tmp_path / "work"  # the crop cache and checkpoints: never beside the shared faces
    result = train("tiny", ANIMEFACE, records, config, uri, "d" * 64, dataset_pictures=[picture],
                   extra_params=settings_params(settings), work_dir=work)

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
    assert {"predictions/predictions_epoch001.png", "predictions/predictions_final.png"} <= artifacts
    assert {"test/confusion_matrix.png", "test/per_label.json", "dataset/counts.png"} <= artifacts
    version = client.get_model_version_by_alias("tiny-classifier", "champion")
    assert str(version.version) == result.registered_version and result.champion
    assert run.data.metrics["test/n"] == result.test.total == sum(result.splits["test"].values())
    low, high = run.data.metrics["test/acc_ci_low"], run.data.metrics["test/acc_ci_high"]
    assert low <= result.test.correct / result.test.total <= high and high - low > 0.1  # a dozen faces: wide
    info = mlflow.models.get_model_info(result.model_uri)  # what `mlflow models serve` and the UI read
    assert info.signature.inputs.to_dict()[0]["tensor-spec"] == {"dtype": "uint8", "shape": (-1, 3, 64, 64)}
    assert info.saved_input_example_info is not None

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

    # a second run takes the alias only when it gets strictly more test faces right (counted here, apart)
    worse = dataclasses.replace(config, epochs=1, lr=1e-7)
    second = train("tiny", ANIMEFACE, records, worse, uri, "d" * 64, work_dir=work)
    assert second.registered_version == "2"
    truth_ids = torch.tensor([result.labels.index(r.label) for r in test_records])

    def correct(version: str) -> int:
        model = mlflow.pytorch.load_model(f"models:/tiny-classifier/{version}", map_location="cpu").eval()
        with torch.no_grad():
            return int((model(images).argmax(dim=1) == truth_ids).sum())

    first_correct, second_correct = correct("1"), correct("2")
    holder = str(client.get_model_version_by_alias("tiny-classifier", "champion").version)
    assert second.champion == (second_correct > first_correct) == (holder == "2"), second.champion_reason
    assert f"{second_correct}/{len(test_records)}" in second.champion_reason

    # the job dropped a label: the model with the job's labels replaces the one that still predicts it
    kept_labels = result.labels[:2]
    third = train("tiny", ANIMEFACE, [r for r in records if r.label in kept_labels], worse, uri, "d" * 64,
                  labels=kept_labels, work_dir=work)
    assert third.champion and f"labels no longer in the job ({result.labels[2]})" in third.champion_reason
    assert str(client.get_model_version_by_alias("tiny-classifier", "champion").version) == "3"


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


def test_cached_faces_are_writable_tensors_without_a_warning(tmp_path: Path):
    import warnings

    from PIL import Image

    from models.data import CachedFaces

    Image.new("RGB", (16, 16), (9, 9, 9)).save(tmp_path / "0.png")
    cache = build_cache(tmp_path, [FaceRecord("0.png", "a", "0")], 16, tmp_path / "cache")
    assert not cache.flags.writeable  # a read-only memmap: torch must not be handed it as it is
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's "not writable" warning from torch.from_numpy fails here
        image, target = CachedFaces(cache, np.array([0]), np.array([0]))[0]
    # torch warns once per process, so also check the cause: the tensor owns its memory, not the memmap's
    start = cache.ctypes.data
    assert not start <= image.untyped_storage().data_ptr() < start + cache.nbytes
    assert image.shape == (3, 16, 16) and int(image[0, 0, 0]) == 9 and target == 0


def test_cache_is_built_once(tmp_path: Path):
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (20, 20), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    records = [FaceRecord(f"{i}.png", "a", str(i)) for i in range(4)]
    first = build_cache(tmp_path, records, 16, tmp_path / "cache")
    assert first.shape == (4, 16, 16, 3) and int(first[2, 0, 0, 0]) == 100
    (tmp_path / "0.png").unlink()  # a second build must not decode again
    assert np.array_equal(build_cache(tmp_path, records, 16, tmp_path / "cache"), first)


def held_out_draw(holdout: int, seed: int = 0) -> tuple[dict[str, list[FaceRecord]], dict[str, list[FaceRecord]]]:
    """Per label, `holdout` faces never trained on and the rest in a seeded order: bench/learning_curve.py's
    draw, so the figure asserted here is the one the benchmark prints for the same settings."""
    import random

    rng = random.Random(seed)
    by_label: dict[str, list[FaceRecord]] = {}
    for record in animeface_records():
        by_label.setdefault(record.label, []).append(record)
    held, pool = {}, {}
    for label in sorted(by_label):
        order = sorted(by_label[label], key=lambda r: r.path)
        rng.shuffle(order)
        held[label], pool[label] = order[:holdout], order[holdout:]
    return held, pool


# bench/learning_curve.py --device cpu --sizes 10 --seeds 1 --face-size 64 --min-steps 300: 134 of the 200
# held-out faces (the bare loop on the same 100 faces: 0.595)
MEASURED_TEN_PER_LABEL = 0.670


@pytest.mark.slow
@needs_animeface
def test_ten_faces_per_label_learn_well_above_chance(tmp_path: Path):
    """The small-data recipe through the shipped training function: 10 real faces of each of 10 labels (100
    in all, chance 10%), scored on 200 other faces of the same characters through the MLflow model."""
    import mlflow
    from PIL import Image

    from models.inference import classify_crops

    held, pool = held_out_draw(holdout=20)
    labels = sorted(pool)
    records = [r for label in labels for r in pool[label][:10]]
    config = dataclasses.replace(settings_config(), face_size=64, min_steps=300, accelerator="cpu")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the job also names a character no face was found for: it is left out and named, the others train
    result = train("few", ANIMEFACE, records, config, uri, "f" * 64, labels=[*labels, "nobody"],
                   work_dir=tmp_path / "work")
    assert result.schedule is not None and result.schedule.fold_val and result.schedule.steps >= 300
    assert result.few_faces == dict.fromkeys(labels, 10) and result.left_out == {"nobody": 0}
    assert result.labels == labels and "does not know nobody (0 faces)" in result.champion_reason
    assert "not trained, too few faces: nobody (0)" in result.warnings()
    run = mlflow.MlflowClient(uri).get_run(result.run_id)
    assert run.data.tags["labels_left_out"] == "nobody (0)" and run.data.params["labels_left_out"] == "nobody"

    model = mlflow.pytorch.load_model(result.model_uri, map_location="cpu")
    crops, truth = [], []
    for label in labels:
        for record in held[label]:
            with Image.open(ANIMEFACE / record.path) as image:
                crops.append(np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)))
            truth.append(label)
    predicted = [label for label, _ in classify_crops(model, crops)]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
    assert accuracy >= MEASURED_TEN_PER_LABEL - 0.07, accuracy
