"""One training run, tracked in MLflow: everything a person needs to judge it is in the run.

Params (every training setting), the dataset as a run input named by its digest, tags (git commit, Prefect
flow run, job, labels left out), metrics per epoch, the selected checkpoint, prediction grids, the test
confusion matrix and per-label table with the test split's size and a confidence interval, the prepare
step's dataset pictures, and the model itself with its labels and normalization inside (with a signature and
an input example), registered as `<job>-classifier`. The alias `champion` moves only when the new model beats
the current champion on the current test split, or knows more of the job's labels; each decision says why.

The recipe scales with the data (`plan_schedule`): the batch is bounded by the training set, the schedule is
counted in optimizer steps with a minimum, and a validation split too small to choose checkpoints with is
trained on instead (the run then keeps the weights at the end of its one-cycle schedule).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from models.callbacks import PredictionGrid, write_test_report
from models.classifier import ClassifierModule, FaceClassifier, Normalization, make_normalization, resnet18
from models.data import DatasetTooSmall, FaceDataModule, FaceRecord, SplitConfig
from tasks.redact import redact

log = logging.getLogger(__name__)
CHAMPION = "champion"


class TrackingLost(RuntimeError):
    """The MLflow tracking server stopped answering during a run."""


@dataclass(frozen=True)
class TrainConfig:
    """The training settings; their defaults are the Settings fields (flows/settings.py `train_*`)."""

    normalization: Normalization
    pretrained: bool
    epochs: int  # at least: small datasets get more epochs to reach min_steps
    patience: int  # early stopping on val/loss, after min_steps, when there is a validation split
    batch_size: int  # at most: bounded by the training set
    min_steps: int
    min_val_faces: int  # a smaller validation split is trained on instead
    lr: float
    weight_decay: float
    face_size: int
    max_per_label: int | None
    min_per_label: int  # labels with fewer faces are left out (and named)
    trusted_per_label: int  # labels with fewer faces are flagged as too few to trust
    min_test_faces: int  # a smaller test split cannot move the champion alias
    seed: int
    accelerator: str
    devices: str  # "auto", a count, or a list such as "0,1"
    strategy: str
    precision: str  # auto: bf16-mixed on CUDA, 32-true elsewhere
    num_workers: int
    # fixed parts of the recipe, and knobs for tests
    label_smoothing: float = 0.1
    augment: bool = True
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    grid_every_n_epochs: int = 5
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0

    def split(self) -> SplitConfig:
        return SplitConfig(val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                           max_per_label=self.max_per_label, min_per_label=self.min_per_label, seed=self.seed)


@dataclass(frozen=True)
class Schedule:
    """How a run trains, decided from the sizes of its splits."""

    batch_size: int
    steps_per_epoch: int
    epochs: int
    fold_val: bool  # the validation faces are trained on; the last weights are kept

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def plan_schedule(n_train: int, n_val: int, config: TrainConfig) -> Schedule:
    """Batch bounded by the training set (at least 4 steps per epoch, never under 8 faces unless the set
    is smaller), and enough epochs for `min_steps` optimizer steps: 60 epochs of 52 faces at batch 64 were
    60 steps, too few to learn anything. A validation split under `min_val_faces` is folded into training."""
    fold = n_val < config.min_val_faces
    faces = n_train + (n_val if fold else 0)
    batch = max(1, min(config.batch_size, max(8, faces // 4), faces))
    per_epoch = max(1, faces // batch)  # the last partial batch is dropped
    if isinstance(config.limit_train_batches, int):
        per_epoch = min(per_epoch, config.limit_train_batches)
    return Schedule(batch, per_epoch, max(config.epochs, math.ceil(config.min_steps / per_epoch)), fold)


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at small n and near 0 or 1."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class TestFigure:
    """The test accuracy as counts, with how far it can be trusted."""

    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    def describe(self) -> str:
        low, high = self.interval
        return f"{self.accuracy:.1%} of {self.total} test faces (95% CI {low:.0%}-{high:.0%})"


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
    test: TestFigure = field(default_factory=lambda: TestFigure(0, 0))
    left_out: dict[str, int] = field(default_factory=dict)  # label -> faces, under min_per_label: not trained
    few_faces: dict[str, int] = field(default_factory=dict)  # trained, but under trusted_per_label
    schedule: Schedule | None = None
    dataset_notes: list[str] = field(default_factory=list)  # what the job's labels did (DatasetView.notes)
    artifacts: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line each: what a person must know before trusting this model."""
        lines = list(self.dataset_notes)
        if self.left_out:
            lines.append("not trained, too few faces: " + ", ".join(f"{k} ({v})" for k, v in self.left_out.items()))
        if self.few_faces:
            lines.append("few faces, accuracy on them is uncertain: "
                         + ", ".join(f"{k} ({v})" for k, v in self.few_faces.items()))
        return lines


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


def select_labels(records: list[FaceRecord], labels: list[str] | None, config: TrainConfig
                  ) -> tuple[list[FaceRecord], dict[str, int], dict[str, int]]:
    """The records of the labels with enough faces; the labels left out (under `min_per_label`, zero
    included) and those kept with too few faces to trust (under `trusted_per_label`), with their counts."""
    counts = Counter(r.label for r in records)
    wanted = list(labels) if labels is not None else sorted(counts)
    left_out = {label: counts.get(label, 0) for label in wanted if counts.get(label, 0) < config.min_per_label}
    chosen = set(wanted) - set(left_out)
    if len(chosen) < 2:
        have = ", ".join(f"{label} ({counts.get(label, 0)})" for label in wanted) or "none"
        raise DatasetTooSmall(
            f"a classifier needs at least 2 labels with {config.min_per_label} or more faces "
            f"(YOTSUBA_TRAIN_MIN_PER_LABEL); faces per label: {have}. Collect more faces, then train again.")
    few = {label: counts[label] for label in wanted if label in chosen and counts[label] < config.trusted_per_label}
    return [r for r in records if r.label in chosen], left_out, few


def train(job: str, data_dir: Path, records: list[FaceRecord], config: TrainConfig, tracking_uri: str,
          dataset_digest: str, dataset_pictures: list[Path] | None = None,
          extra_params: dict[str, Any] | None = None, labels: list[str] | None = None,
          dataset_notes: list[str] | None = None, work_dir: Path | None = None,
          extra_tags: dict[str, str] | None = None) -> TrainResult:
    """Train on `records`, track everything in MLflow (experiment = job), register and maybe crown the model.

    `labels`: the job's labels (default: those of the records). A label under `min_per_label` faces is left
    out and named (tag `labels_left_out`); the others still train. Raises TrackingLost, with the checkpoint
    kept under `<work>/checkpoints/`, when the tracking server stops answering. Face paths are relative to
    `data_dir`; the crop cache, kept checkpoints and local MLflow artifacts go under `work_dir` (default:
    `data_dir`)."""
    import mlflow
    from pytorch_lightning.loggers import MLFlowLogger

    started = time.monotonic()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    job_labels = list(labels) if labels is not None else sorted({r.label for r in records})
    chosen, left_out, few = select_labels(records, job_labels, config)
    work_dir = work_dir or data_dir
    datamodule = FaceDataModule(data_dir, chosen, size=config.face_size, batch_size=config.batch_size,
                                split=config.split(), num_workers=config.num_workers, cache_dir=work_dir / "cache")
    datamodule.prepare_data()
    datamodule.setup()
    schedule = plan_schedule(len(datamodule.splits["train"]), len(datamodule.splits["val"]), config)
    if schedule.fold_val:
        datamodule.fold_validation()
    datamodule.batch_size = schedule.batch_size
    model_labels = datamodule.labels
    mean = std = None
    if config.normalization == Normalization.dataset:
        mean, std = datamodule.train_stats()
    model = FaceClassifier(resnet18(len(model_labels), pretrained=config.pretrained),
                           make_normalization(config.normalization, mean, std), model_labels)
    module = ClassifierModule(model, lr=config.lr, weight_decay=config.weight_decay,
                              label_smoothing=config.label_smoothing, augment=config.augment,
                              channels_last=torch.cuda.is_available())

    mlflow.set_tracking_uri(tracking_uri)
    mark_orphaned_runs_failed(work_dir, job)
    experiment_id = ensure_experiment(job, tracking_uri, work_dir / "mlartifacts")
    # labelled_faces: the nightly flow trains again only when enough new faces arrived since this run
    tags = {"job": job, "dataset_digest": dataset_digest, "labelled_faces": str(len(records)),
            "labels_left_out": ", ".join(f"{k} ({v})" for k, v in left_out.items()) or "none",
            "labels_few_faces": ", ".join(f"{k} ({v})" for k, v in few.items()) or "none",
            "dataset_notes": "; ".join(dataset_notes or []) or "none", **(extra_tags or {})}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    if flow_run_id := prefect_flow_run_id():
        tags["prefect.flow_run_id"] = flow_run_id
    splits = datamodule.summary()

    run = mlflow.start_run(experiment_id=experiment_id, tags=tags, run_name=run_name(config, len(chosen)))
    run_id = run.info.run_id
    keep = work_dir / "checkpoints" / job / run_id  # outlives the run only when tracking failed
    workdir = Path(tempfile.mkdtemp(prefix="yotsuba-train-"))
    try:
        params = {**asdict(config), "labels": ",".join(model_labels), "labels_left_out": ",".join(left_out) or "none",
                  **(extra_params or {}), "batch_size_used": schedule.batch_size, "epochs_planned": schedule.epochs,
                  "steps_planned": schedule.steps, "val_folded_into_train": schedule.fold_val}
        params.update({f"n_{name}": sum(counts.values()) for name, counts in splits.items()})
        if mean is not None and std is not None:
            params.update({"dataset_mean": [round(v, 5) for v in mean], "dataset_std": [round(v, 5) for v in std]})
        mlflow.log_params({k: redact(str(v)) for k, v in params.items()})  # URLs in settings may carry a password
        _log_dataset(mlflow, datamodule, job, dataset_digest, workdir)

        if schedule.fold_val:  # no validation split: the weights at the end of the one-cycle schedule
            checkpoint = ModelCheckpoint(dirpath=keep, filename="last", save_top_k=1)
            stopping: list[pl.Callback] = []
        else:
            checkpoint = ModelCheckpoint(dirpath=keep, filename="best", monitor="val/loss", mode="min",
                                         save_top_k=1)
            stopping = [EarlyStopping(monitor="val/loss", mode="min", patience=config.patience)]
        every = max(config.grid_every_n_epochs, math.ceil(schedule.epochs / 10))  # at most ~10 grids a run
        grid = PredictionGrid(workdir / "predictions", every_n_epochs=every)
        logger = MLFlowLogger(experiment_name=job, tracking_uri=tracking_uri, run_id=run_id)
        trainer = pl.Trainer(
            max_epochs=schedule.epochs, min_steps=min(config.min_steps, schedule.steps),
            accelerator=config.accelerator, devices=config.devices, strategy=config.strategy,
            precision=_precision(config), logger=logger,
            callbacks=[checkpoint, *stopping, grid], enable_progress_bar=False, enable_model_summary=False,
            log_every_n_steps=1, limit_train_batches=config.limit_train_batches,
            limit_val_batches=0 if schedule.fold_val else config.limit_val_batches,
            num_sanity_val_steps=0 if schedule.fold_val else 2, deterministic=False,
        )
        trainer.fit(module, datamodule=datamodule)
        if checkpoint.best_model_path:
            mlflow.log_artifact(checkpoint.best_model_path, "checkpoints")
            best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(best["state_dict"])
        grid.written.append(grid.render(trainer, module, "predictions_final.png", "the kept model"))
        for path in grid.written:
            mlflow.log_artifact(str(path), "predictions")

        fitted = {k: float(v) for k, v in trainer.callback_metrics.items()}  # trainer.test() replaces them
        if checkpoint.best_model_score is not None and not schedule.fold_val:
            fitted["best/val_loss"] = float(checkpoint.best_model_score)
            mlflow.log_metric("best/val_loss", fitted["best/val_loss"])
        tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
        matrix = module.test_confusion.compute().cpu().numpy()
        figure = TestFigure(int(np.trace(matrix)), int(matrix.sum()))
        low, high = figure.interval
        mlflow.log_metrics({"test/n": figure.total, "test/correct": figure.correct, "test/acc_ci_low": low,
                            "test/acc_ci_high": high})
        for path in write_test_report(matrix, model_labels, workdir / "test"):
            mlflow.log_artifact(str(path), "test")
        for path in dataset_pictures or []:
            mlflow.log_artifact(str(path), "dataset")

        served = module.model.to("cpu").eval()
        served = served.to(memory_format=torch.contiguous_format)
        name = f"{job}-classifier"
        example = datamodule.datasets["test"][0][0].unsqueeze(0).numpy()
        info = _log_model(mlflow, served, name, config, model_labels, example)
        version = str(info.registered_model_version) if info.registered_model_version else None
        crowned, reason = crown_if_better(name, version, served, datamodule, job_labels, left_out,
                                          config.min_test_faces)
        mlflow.set_tags({"champion": str(crowned).lower(), "champion_reason": reason,
                         "test_figure": figure.describe()})
        metrics = fitted | {k: float(v) for k, v in tested.items()}
        result = TrainResult(
            run_id=run_id, experiment_id=experiment_id, model_uri=info.model_uri,
            registered_version=version, champion=crowned, champion_reason=reason, metrics=metrics,
            labels=model_labels, splits=splits, seconds=0.0, test=figure, left_out=left_out, few_faces=few,
            schedule=schedule, dataset_notes=list(dataset_notes or []),
        )
        mlflow.end_run()
    except BaseException as exc:
        lost = tracking_unreachable(tracking_uri)
        ended = _end_run_quietly(mlflow, run_id, "FAILED")
        if not ended:  # the server is gone: the next run marks it FAILED (see mark_orphaned_runs_failed)
            keep.mkdir(parents=True, exist_ok=True)
            (keep / "RUN_NOT_ENDED").write_text(json.dumps({"run_id": run_id, "tracking_uri": tracking_uri}))
        if lost:
            saved = sorted(keep.glob("*.ckpt"))
            raise TrackingLost(
                f"the MLflow tracking server stopped answering during training (run {run_id}); "
                + (f"the checkpoint is kept in {saved[-1]}" if saved else "no checkpoint was written yet")
                + ("; the run is marked FAILED" if ended else "; the next `yotsuba train` marks the run FAILED")
            ) from exc
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(keep, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def tracking_unreachable(tracking_uri: str, timeout: float = 3.0) -> bool:
    """A tracking server that does not answer /health now (a file or SQLite store never is unreachable)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return False
    import requests

    try:
        return not requests.get(tracking_uri.rstrip("/") + "/health", timeout=timeout).ok
    except requests.RequestException:
        return True


def _end_run_quietly(mlflow: Any, run_id: str, status: str) -> bool:
    from mlflow import MlflowClient

    try:
        if mlflow.active_run() is not None:
            mlflow.end_run(status)  # pops the active run first, then tells the server
        else:
            MlflowClient().set_terminated(run_id, status)
        return True
    except Exception:  # the server is gone: the caller records the run for the next start
        return False


def mark_orphaned_runs_failed(data_dir: Path, job: str) -> list[str]:
    """Runs a lost tracking server left RUNNING: marked FAILED now that it answers (their checkpoints stay)."""
    from mlflow import MlflowClient

    marked = []
    for marker in sorted((data_dir / "checkpoints" / job).glob("*/RUN_NOT_ENDED")):
        run_id = json.loads(marker.read_text())["run_id"]
        try:
            MlflowClient().set_terminated(run_id, "FAILED")
        except Exception as exc:  # another store, or the run was deleted: leave the marker, say so
            log.warning("could not mark run %s FAILED: %s", run_id, type(exc).__name__)
            continue
        marker.unlink()
        marked.append(run_id)
    return marked


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


def _log_model(mlflow: Any, model: FaceClassifier, name: str, config: TrainConfig, labels: list[str],
               example: np.ndarray) -> Any:
    """The model with its signature and a real test crop as input example: `mlflow models serve` and the UI
    show what to send (RGB uint8 crops, N x 3 x S x S) and what comes back (logits in the labels' order)."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    size = config.face_size
    signature = ModelSignature(  # an unnamed input: a named one makes the served model expect a dict
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 3, size, size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(labels)))]),
    )
    metadata = {"labels": labels, "normalization": config.normalization.value, "face_size": size,
                "input": "RGB uint8 crops (N, 3, S, S) made by tasks.faces.crop_face"}
    # MLflow prints "Successfully registered model ..." to stderr itself: the train summary says it once
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        label_file = Path(tmp) / "labels.json"
        label_file.write_text(json.dumps(dict(enumerate(labels)), indent=1))
        return mlflow.pytorch.log_model(
            model, name="model", registered_model_name=name, signature=signature, metadata=metadata,
            input_example=example, extra_files=[str(label_file)],
            serialization_format="pickle",  # keeps `labels` on the module; pt2 export would drop it
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "yotsuba-net"],
        )


def champion_decision(new_labels: list[str], new_correct: int, total: int, job_labels: list[str],
                      left_out: dict[str, int], min_test_faces: int, champion_version: str | None = None,
                      champion_labels: list[str] | None = None, champion_correct: int | None = None
                      ) -> tuple[bool, str]:
    """Crown the new model or keep the champion, and say why. Accuracies are compared as counts of correct
    answers on the same test split (never floats: 0.4 in float32 is not 2/5). `champion_correct` is needed
    only when both models have the same labels."""
    missing = ""
    if left_out:
        missing = ("; it does not know " + ", ".join(f"{k} ({v} faces)" for k, v in left_out.items())
                   + ": too few faces (YOTSUBA_TRAIN_MIN_PER_LABEL)")
    if champion_version is None:
        return True, f"first champion: {new_correct}/{total} on its test split{missing}"
    job = set(job_labels)
    mine, theirs = set(new_labels) & job, set(champion_labels or []) & job
    if mine != theirs or set(new_labels) != set(champion_labels or []):
        gone = sorted(set(champion_labels or []) - job)
        if mine > theirs or (mine == theirs and gone):
            because = (f"it knows {', '.join(sorted(mine - theirs))}, which version {champion_version} lacks"
                       if mine > theirs else f"version {champion_version} knows labels no longer in the job "
                                             f"({', '.join(gone)})")
            return True, f"the labels changed: {because}{missing}"
        if mine < theirs:
            return False, (f"version {champion_version} stays champion: it knows {', '.join(sorted(theirs - mine))}, "
                           f"which this model lacks{missing}")
        return False, (f"version {champion_version} stays champion: the labels differ both ways (this model lacks "
                       f"{', '.join(sorted(theirs - mine)) or 'none'}, it lacks {', '.join(sorted(mine - theirs))}); "
                       "train again when every label has enough faces")
    if total < min_test_faces:
        return False, (f"version {champion_version} stays champion: the test split has {total} faces, too few to "
                       f"judge (YOTSUBA_TRAIN_MIN_TEST_FACES={min_test_faces})")
    if champion_correct is None:
        raise ValueError("the champion's test result is needed when the labels are the same")
    if new_correct > champion_correct:
        return True, (f"{new_correct}/{total} beats version {champion_version}'s {champion_correct}/{total} "
                      "on the same test split")
    verb = "ties" if new_correct == champion_correct else "is below"
    return False, (f"version {champion_version} stays champion: this model's {new_correct}/{total} {verb} its "
                   f"{champion_correct}/{total} on the same test split")


def crown_if_better(name: str, version: str | None, model: FaceClassifier, datamodule: FaceDataModule,
                    job_labels: list[str], left_out: dict[str, int], min_test_faces: int) -> tuple[bool, str]:
    """Move the `champion` alias to `version` when `champion_decision` says so (the reason either way)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if version is None:
        return False, "the model was not registered"
    client = MlflowClient()
    new_correct, total = split_correct(model, datamodule, "test")
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is None:
        crowned, reason = champion_decision(list(model.labels), new_correct, total, job_labels, left_out,
                                            min_test_faces)
    else:
        champion = mlflow.pytorch.load_model(f"models:/{name}@{CHAMPION}", map_location="cpu")
        champion_labels = list(getattr(champion, "labels", []))
        champion_correct = (split_correct(champion, datamodule, "test")[0]
                            if champion_labels == list(model.labels) else None)
        crowned, reason = champion_decision(list(model.labels), new_correct, total, job_labels, left_out,
                                            min_test_faces, str(current.version), champion_labels, champion_correct)
    if crowned:
        client.set_registered_model_alias(name, CHAMPION, version)
    return crowned, reason


@torch.no_grad()
def split_correct(model: torch.nn.Module, datamodule: FaceDataModule, split: str) -> tuple[int, int]:
    """(correct, total) of a model on a split, on the CPU in float32: the same arithmetic for every model."""
    model.eval()
    correct = total = 0
    for images, targets in datamodule._loader(split, shuffle=False):
        predicted = model(images).argmax(dim=1)
        correct += int((predicted == targets).sum())
        total += len(targets)
    return correct, total
