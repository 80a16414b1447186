"""The classifier: a torchvision ResNet18 behind its own input normalization, and the LightningModule.

`FaceClassifier` is what gets saved and served: raw RGB uint8 crops (N, 3, S, S) in, logits out; the
normalization (per image, dataset statistics, or ImageNet's) lives inside it, so nobody can feed it
differently normalized pixels. The LightningModule receives it (it does not build it), holds one
torchmetrics object per stage, and augments training batches only.
"""

from __future__ import annotations

import math
from enum import StrEnum

import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812
import torchvision
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalization(StrEnum):
    per_image = "per_image"  # each image standardised on its own (the reference project's wrapper)
    dataset = "dataset"  # exact per-channel mean and std of the training split
    imagenet = "imagenet"  # ImageNet's statistics: the right choice with pretrained weights


class PretrainedWeightsUnavailable(RuntimeError):
    pass


class PerImageStandardize(nn.Module):
    """(x - mean) / max(std, 1/sqrt(n)) over each image's pixels and channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        floor = 1.0 / math.sqrt(flat.shape[1])
        std = flat.std(dim=1, unbiased=False).clamp_min(floor).view(-1, 1, 1, 1)
        return (x - mean) / std


class ChannelStandardize(nn.Module):
    def __init__(self, mean: tuple[float, ...] | list[float], std: tuple[float, ...] | list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def make_normalization(mode: Normalization, mean: list[float] | None = None,
                       std: list[float] | None = None) -> nn.Module:
    if mode == Normalization.per_image:
        return PerImageStandardize()
    if mode == Normalization.imagenet:
        return ChannelStandardize(IMAGENET_MEAN, IMAGENET_STD)
    if mean is None or std is None:
        raise ValueError("dataset normalization needs the training split's mean and std")
    return ChannelStandardize(mean, std)


def resnet18(num_classes: int, pretrained: bool = False) -> nn.Module:
    """torchvision's ResNet18 with a new head; ImageNet weights through torchvision's own loader."""
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1 if pretrained else None
    try:
        network = torchvision.models.resnet18(weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a broken download a RuntimeError
        raise PretrainedWeightsUnavailable(
            f"could not load ImageNet weights for ResNet18 ({exc}). They are downloaded once into "
            f"{torch.hub.get_dir()}/checkpoints; without internet, copy resnet18-f37072fd.pth there, "
            "or train from scratch (pretrained: false)"
        ) from None
    network.fc = nn.Linear(network.fc.in_features, num_classes)
    return network


class FaceClassifier(nn.Module):
    """Raw RGB uint8 (N, 3, S, S) in, logits out. Labels and normalization travel with the weights."""

    def __init__(self, network: nn.Module, normalization: nn.Module, labels: list[str]):
        super().__init__()
        self.network = network
        self.normalization = normalization
        self.labels = list(labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        return self.network(self.normalization(x))


def augment(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample augmentation of a uint8 batch on its own device: random scale/shift/rotation, horizontal
    flip, brightness/contrast/saturation. Returns float in [0, 1]."""
    x = batch.float() / 255.0
    n = x.shape[0]
    device = x.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, device=device, generator=generator) * (high - low) + low

    scale = uniform(0.8, 1.05)
    angle = uniform(-0.2, 0.2)
    flip = torch.where(torch.rand(n, device=device, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, uniform(-0.08, 0.08)], dim=1),
        torch.stack([sin * flip, cos, uniform(-0.08, 0.08)], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    brightness = uniform(0.8, 1.2).view(-1, 1, 1, 1)
    contrast = uniform(0.8, 1.2).view(-1, 1, 1, 1)
    saturation = uniform(0.8, 1.2).view(-1, 1, 1, 1)
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * saturation + gray
    return x.clamp(0.0, 1.0)


class ClassifierModule(pl.LightningModule):
    def __init__(self, model: FaceClassifier, lr: float = 2e-3, weight_decay: float = 0.05,
                 label_smoothing: float = 0.1, augment: bool = True, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.save_hyperparameters(ignore=["model"])
        classes = len(model.labels)
        self.train_acc = MulticlassAccuracy(classes, average="micro")
        self.val_acc = MulticlassAccuracy(classes, average="micro")
        self.val_f1 = MulticlassF1Score(classes, average="macro")
        self.test_acc = MulticlassAccuracy(classes, average="micro")
        self.test_f1 = MulticlassF1Score(classes, average="macro")
        self.test_confusion = MulticlassConfusionMatrix(classes)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, training: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # noqa: ANN001
        images, targets = batch
        if training and self.hparams.augment:
            images = augment(images)  # on the device the batch is on: cheap on a GPU
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = self.model(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.hparams.label_smoothing)
        return loss, logits.argmax(dim=1), targets

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:  # noqa: ANN001
        loss, predicted, targets = self._step(batch, training=True)
        self.train_acc(predicted, targets)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:  # noqa: ANN001
        loss, predicted, targets = self._step(batch)
        self.val_acc(predicted, targets)
        self.val_f1(predicted, targets)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        self.log("val/f1", self.val_f1, on_epoch=True)

    def test_step(self, batch, batch_idx: int) -> None:  # noqa: ANN001
        loss, predicted, targets = self._step(batch)
        self.test_acc(predicted, targets)
        self.test_f1(predicted, targets)
        self.test_confusion.update(predicted, targets)
        self.log("test/loss", loss, on_epoch=True)
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/f1", self.test_f1, on_epoch=True)

    def configure_optimizers(self):  # noqa: ANN201
        decay, no_decay = [], []
        for name, parameter in self.model.named_parameters():
            (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=max(1, int(self.trainer.estimated_stepping_batches)),
            pct_start=0.15,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
