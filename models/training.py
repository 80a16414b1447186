"""One training run, tracked in MLflow: everything a person needs to judge it is in the run.

Params (every training setting), the dataset as a run input named by its catalog digest, tags (git
commit, Prefect flow run, job), metrics per epoch, the best-val-loss checkpoint, prediction grids,
the test confusion matrix and per-label table, the prepare step's dataset pictures, and the model
itself with its labels and normalization inside, registered as `<job>-classifier`. The alias
`champion` moves only when the new model beats the current champion on the current test split.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from models.callbacks import PredictionGrid, write_test_report
from models.classifier import ClassifierModule, FaceClassifier, Normalization, make_normalization, resnet18
from models.data import FaceDataModule, FaceRecord, SplitConfig
from tasks.redact import redact

log = logging.getLogger(__name__)
CHAMPION = "champion"


@dataclass(frozen=True)
class TrainConfig:
    normalization: Normalization = Normalization.per_image
    pretrained: bool = False
    epochs: int = 60
    patience: int = 15  # early stopping on val/loss
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    augment: bool = True
    face_size: int = 128
    max_per_label: int | None = None
    min_per_label: int = 10
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    grid_every_n_epochs: int = 5
    accelerator: str = "auto"
    devices: str = "auto"  # "auto", a count, or a list such as "0,1"
    strategy: str = "auto"  # e.g. "ddp" for several GPUs
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true elsewhere
    num_workers: int = 0
    limit_train_batches: float | int = 1.0  # tests shrink the run with these
    limit_val_batches: float | int = 1.0

    def split(self) -> SplitConfig:
        return SplitConfig(val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                           max_per_label=self.max_per_label, min_per_label=self.min_per_label, seed=self.seed)


@dataclass
class TrainResult:
    run_id: str
    experiment_id: str
    model_uri: str
    registered_version: str | None
    champion: bool
    champion_reason: str
    metrics: dict[str, float]
    labels: list[str]
    splits: dict[str, dict[str, int]]
    seconds: float
    artifacts: list[str] = field(default_factory=list)


def default_tracking_uri(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def prefect_flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return flow_run.id
    except Exception:  # not inside a flow run, or Prefect unavailable
        return None


def _precision(config: TrainConfig) -> str:
    if config.precision != "auto":
        return config.precision
    return "bf16-mixed" if torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda") else "32-true"


def ensure_experiment(name: str, tracking_uri: str, artifact_root: Path | None) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # With a local SQLite store, keep artifacts beside it in the data directory instead of ./mlruns.
    location = artifact_root.resolve().as_uri() + f"/{name}" if artifact_root and tracking_uri.startswith("sqlite") \
        else None
    return mlflow.create_experiment(name, artifact_location=location)


def train(job: str, data_dir: Path, records: list[FaceRecord], config: TrainConfig, tracking_uri: str,
          dataset_digest: str, dataset_pictures: list[Path] | None = None,
          extra_params: dict[str, Any] | None = None, extra_tags: dict[str, str] | None = None) -> TrainResult:
    """Train on `records`, track everything in MLflow (experiment = job), register and maybe crown the model."""
    import mlflow
    from pytorch_lightning.loggers import MLFlowLogger

    started = time.monotonic()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = FaceDataModule(data_dir, records, size=config.face_size, batch_size=config.batch_size,
                                split=config.split(), num_workers=config.num_workers)
    datamodule.prepare_data()
    datamodule.setup()
    labels = datamodule.labels
    mean = std = None
    if config.normalization == Normalization.dataset:
        mean, std = datamodule.train_stats()
    model = FaceClassifier(resnet18(len(labels), pretrained=config.pretrained),
                           make_normalization(config.normalization, mean, std), labels)
    module = ClassifierModule(model, lr=config.lr, weight_decay=config.weight_decay,
                              label_smoothing=config.label_smoothing, augment=config.augment,
                              channels_last=torch.cuda.is_available())

    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = ensure_experiment(job, tracking_uri, data_dir / "mlartifacts")
    # labelled_faces: the nightly flow trains again only when enough new faces arrived since this run
    tags = {"job": job, "dataset_digest": dataset_digest, "labelled_faces": str(len(records)), **(extra_tags or {})}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    if flow_run_id := prefect_flow_run_id():
        tags["prefect.flow_run_id"] = flow_run_id
    splits = datamodule.summary()

    with tempfile.TemporaryDirectory(prefix="yotsuba-train-") as tmp, \
            mlflow.start_run(experiment_id=experiment_id, tags=tags, run_name=run_name(config, len(records))) as run:
        workdir = Path(tmp)
        params = {**asdict(config), "labels": ",".join(labels), **(extra_params or {})}
        params.update({f"n_{name}": sum(counts.values()) for name, counts in splits.items()})
        if mean is not None:
            params.update({"dataset_mean": [round(v, 5) for v in mean], "dataset_std": [round(v, 5) for v in std]})
        mlflow.log_params({k: redact(str(v)) for k, v in params.items()})  # URLs in settings may carry a password
        _log_dataset(mlflow, datamodule, job, dataset_digest, workdir)

        checkpoint = ModelCheckpoint(dirpath=workdir / "checkpoints", filename="best", monitor="val/loss",
                                     mode="min", save_top_k=1)
        grid = PredictionGrid(workdir / "predictions", every_n_epochs=config.grid_every_n_epochs)
        logger = MLFlowLogger(experiment_name=job, tracking_uri=tracking_uri, run_id=run.info.run_id)
        trainer = pl.Trainer(
            max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
            strategy=config.strategy, precision=_precision(config), logger=logger,
            callbacks=[checkpoint, EarlyStopping(monitor="val/loss", mode="min", patience=config.patience), grid],
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
            limit_train_batches=config.limit_train_batches, limit_val_batches=config.limit_val_batches,
            deterministic=False,
        )
        trainer.fit(module, datamodule=datamodule)
        if checkpoint.best_model_path:
            mlflow.log_artifact(checkpoint.best_model_path, "checkpoints")
            best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(best["state_dict"])
        grid.written.append(grid.render(trainer, module, "predictions_best.png", "validation predictions, best model"))
        for path in grid.written:
            mlflow.log_artifact(str(path), "predictions")

        fitted = {k: float(v) for k, v in trainer.callback_metrics.items()}  # trainer.test() replaces them
        if checkpoint.best_model_score is not None:
            fitted["best/val_loss"] = float(checkpoint.best_model_score)
            mlflow.log_metric("best/val_loss", fitted["best/val_loss"])
        tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
        matrix = module.test_confusion.compute().cpu().numpy()
        for path in write_test_report(matrix, labels, workdir / "test"):
            mlflow.log_artifact(str(path), "test")
        for path in dataset_pictures or []:
            mlflow.log_artifact(str(path), "dataset")

        served = module.model.to("cpu").eval()
        served = served.to(memory_format=torch.contiguous_format)
        name = f"{job}-classifier"
        info = _log_model(mlflow, served, name, config, labels)
        version = str(info.registered_model_version) if info.registered_model_version else None
        crowned, reason = crown_if_better(name, version, served, datamodule, float(tested["test/acc"]))
        mlflow.set_tag("champion", str(crowned).lower())
        mlflow.set_tag("champion_reason", reason)
        metrics = fitted | {k: float(v) for k, v in tested.items()}
        return TrainResult(
            run_id=run.info.run_id, experiment_id=experiment_id, model_uri=info.model_uri,
            registered_version=version, champion=crowned, champion_reason=reason, metrics=metrics, labels=labels,
            splits=splits, seconds=time.monotonic() - started,
        )


def run_name(config: TrainConfig, faces: int) -> str:
    """Names that tell runs apart in the MLflow UI (MLflow's random names repeat under a fixed seed)."""
    return f"{config.normalization.value}-{faces}faces-{time.strftime('%Y%m%d-%H%M%S')}"


def _log_dataset(mlflow: Any, datamodule: FaceDataModule, job: str, digest: str, workdir: Path) -> None:
    import pandas as pd

    rows = [{"path": r.path, "label": r.label, "split": name, "image_sha256": r.image_sha256}
            for name, records in datamodule.splits.items() for r in records]
    frame = pd.DataFrame(rows)
    dataset = mlflow.data.from_pandas(frame, name=f"{job}-faces", targets="label", digest=digest[:16])
    mlflow.log_input(dataset, context="training")
    manifest = workdir / "splits.json"
    datamodule.write_manifest(manifest)
    mlflow.log_artifact(str(manifest), "dataset")


def _log_model(mlflow: Any, model: FaceClassifier, name: str, config: TrainConfig, labels: list[str]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    size = config.face_size
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 3, size, size), "rgb_crops")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(labels)), "logits")]),
    )
    metadata = {"labels": labels, "normalization": config.normalization.value, "face_size": size,
                "input": "RGB uint8 crops (N, 3, S, S) made by tasks.faces.crop_face"}
    with tempfile.TemporaryDirectory() as tmp:
        label_file = Path(tmp) / "labels.json"
        label_file.write_text(json.dumps(dict(enumerate(labels)), indent=1))
        return mlflow.pytorch.log_model(
            model, name="model", registered_model_name=name, signature=signature, metadata=metadata,
            extra_files=[str(label_file)], serialization_format="pickle",  # keeps `labels` on the module
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "yotsuba-net"],
        )


def crown_if_better(name: str, version: str | None, model: FaceClassifier, datamodule: FaceDataModule,
                    accuracy: float) -> tuple[bool, str]:
    """Move the `champion` alias to `version` if it beats the current champion on this test split."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if version is None:
        return False, "the model was not registered"
    client = MlflowClient()
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        client.set_registered_model_alias(name, CHAMPION, version)
        return True, f"first champion (test accuracy {accuracy:.4f})"
    champion = mlflow.pytorch.load_model(f"models:/{name}@{CHAMPION}", map_location="cpu")
    if list(getattr(champion, "labels", [])) != list(model.labels):
        client.set_registered_model_alias(name, CHAMPION, version)
        return True, f"the labels changed since version {current.version}: the new model replaces it"
    theirs = split_accuracy(champion, datamodule, "test")
    if accuracy > theirs:
        client.set_registered_model_alias(name, CHAMPION, version)
        return True, f"test accuracy {accuracy:.4f} beats version {current.version}'s {theirs:.4f} on the same split"
    return False, f"version {current.version} stays champion: {theirs:.4f} on this test split vs {accuracy:.4f}"


@torch.no_grad()
def split_accuracy(model: torch.nn.Module, datamodule: FaceDataModule, split: str) -> float:
    model.eval()
    correct = total = 0
    for images, targets in datamodule._loader(split, shuffle=False):
        predicted = model(images).argmax(dim=1)
        correct += int((predicted == targets).sum())
        total += len(targets)
    return correct / total if total else 0.0
