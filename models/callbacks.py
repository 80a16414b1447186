"""Pictures of a training run: a prediction grid every N epochs, a confusion matrix and a per-label table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    return plt


def prediction_grid(images: np.ndarray, truth: list[str], predicted: list[str], confidence: list[float],
                    path: Path, title: str, columns: int = 8) -> Path:
    """Faces with their true and predicted label; wrong predictions framed in red."""
    plt = _pyplot()
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true, pred, conf in zip(axes.flat, images, truth, predicted, confidence, strict=False):
        ax.imshow(image)
        wrong = true != pred
        ax.set_title(f"{pred} {conf:.0%}" + (f"\n(is {true})" if wrong else ""), fontsize=6,
                     color="red" if wrong else "black")
        if wrong:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix_png(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> Path:
    plt = _pyplot()
    size = max(5, 0.55 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            ax.text(j, i, str(int(value)), ha="center", va="center", fontsize=7,
                    color="white" if value > matrix.max() / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_label_table(matrix: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    rows = []
    for index, label in enumerate(labels):
        true_positive = float(matrix[index, index])
        support = float(matrix[index].sum())
        predicted = float(matrix[:, index].sum())
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"label": label, "support": int(support), "precision": round(precision, 4),
                     "recall": round(recall, 4), "f1": round(f1, 4)})
    return rows


class PredictionGrid(pl.Callback):
    """Every `every_n_epochs`, predicts a fixed sample of validation faces (test faces when the run has no
    validation split) and saves a grid PNG (the tracking layer logs it). The sample is the first `count`
    faces of that split: the same each time."""

    def __init__(self, out_dir: Path, every_n_epochs: int = 5, count: int = 32):
        self.out_dir = Path(out_dir)
        self.every_n_epochs = every_n_epochs
        self.count = count
        self.written: list[Path] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs and epoch + 1 != trainer.max_epochs:
            return
        self.written.append(self.render(trainer, pl_module, f"predictions_epoch{epoch + 1:03d}.png",
                                        f"after epoch {epoch + 1}"))

    def render(self, trainer: pl.Trainer, pl_module: pl.LightningModule, name: str, title: str) -> Path:
        datamodule = trainer.datamodule
        split = "val" if len(datamodule.datasets["val"]) else "test"
        dataset = datamodule.datasets[split]
        count = min(self.count, len(dataset))
        images = torch.stack([dataset[i][0] for i in range(count)])
        targets = [int(dataset[i][1]) for i in range(count)]
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            probabilities = torch.softmax(pl_module(images.to(pl_module.device)).float(), dim=1).cpu()
        pl_module.train(was_training)
        labels = datamodule.labels
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return prediction_grid(
            images.permute(0, 2, 3, 1).numpy(), [labels[t] for t in targets],
            [labels[int(p)] for p in probabilities.argmax(dim=1)], probabilities.max(dim=1).values.tolist(),
            self.out_dir / name, f"{split} predictions, {title}",
        )


def write_test_report(matrix: np.ndarray, labels: list[str], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = confusion_matrix_png(matrix, labels, out_dir / "confusion_matrix.png", "test split: confusion matrix")
    table = out_dir / "per_label.json"
    table.write_text(json.dumps({"labels": labels, "confusion_matrix": matrix.astype(int).tolist(),
                                 "per_label": per_label_table(matrix, labels)}, indent=2))
    return picture, table
