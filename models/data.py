"""The training data: the catalog's kept labelled faces, split for good and decoded once.

- Split: each face's split follows from a hash of its *source image* (`split_of`), so an image keeps its
  split forever as the dataset grows (nightly growth never moves a validation image into training), and
  every label is split in the same proportions in expectation (stratified by construction).
- Cap: at most `max_per_label` training faces per label, chosen by a seeded hash order, so the choice is
  stable as faces arrive.
- Cache: crops are decoded once into a memory-mapped uint8 array (N, S, S, 3) named by the dataset
  digest; epochs read it and never decode PNG again.
- Augmentation happens on batches in the LightningModule (train only); evaluation is deterministic.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from tasks.dataset import FaceRecord

SPLITS = ("train", "val", "test")


class DatasetTooSmall(ValueError):
    pass


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_per_label: int | None = None  # training faces per label (None: all)
    min_per_label: int = 1  # fewer faces in a label is an error (training leaves such labels out before)
    seed: int = 0
    salt: str = "yotsuba-split-v1"  # changing it reshuffles every split: never do that to a live dataset


def split_unit(key: str, config: SplitConfig) -> float:
    return int(hashlib.sha256(f"{config.salt}:{key}".encode()).hexdigest()[:12], 16) / 16**12


def split_of(key: str, config: SplitConfig) -> str:
    """train | val | test for a source image, from a hash: stable forever for a given salt."""
    unit = split_unit(key, config)
    if unit < config.test_fraction:
        return "test"
    if unit < config.test_fraction + config.val_fraction:
        return "val"
    return "train"


def assign_splits(records: list[FaceRecord], config: SplitConfig) -> dict[str, list[FaceRecord]]:
    """Split, check sizes, then cap the training faces of each label."""
    counts = Counter(r.label for r in records)
    small = {label: n for label, n in counts.items() if n < config.min_per_label}
    if small:
        listing = ", ".join(f"{label} ({n})" for label, n in sorted(small.items()))
        raise DatasetTooSmall(
            f"too few labelled faces (need at least {config.min_per_label} per label): {listing}. "
            "Scrape more for these labels, or remove them from the job."
        )
    splits: dict[str, list[FaceRecord]] = {name: [] for name in SPLITS}
    for record in records:
        splits[split_of(record.image_sha256, config)].append(record)
    _fill_empty_splits(splits, config)
    for name in SPLITS:
        missing = sorted(set(counts) - {r.label for r in splits[name]})
        if missing:
            raise DatasetTooSmall(
                f"no {name} faces for {', '.join(missing)}: the label is too small for a stable split; "
                f"collect more faces (at least {config.min_per_label}, more is better)"
            )
    if config.max_per_label is not None:
        splits["train"] = cap_per_label(splits["train"], config.max_per_label, config.seed)
    return splits


def _fill_empty_splits(splits: dict[str, list[FaceRecord]], config: SplitConfig) -> None:
    """A small label can draw no test or val image by hash alone (10% each: 6% of 26-face labels). It then
    lends the split its train image nearest to that split's hash range: deterministic, and only for labels
    the hash left empty, so the splits of every other label stay as stable as ever."""
    for name in ("test", "val"):
        present = {r.label for r in splits[name]}
        for label in sorted({r.label for r in splits["train"]} - present):
            mine = [r for r in splits["train"] if r.label == label]
            if len({r.image_sha256 for r in mine}) < 2:
                continue  # nothing to lend without emptying train: the size check below says so
            lent = min(mine, key=lambda r: split_unit(r.image_sha256, config)).image_sha256
            splits[name] += [r for r in mine if r.image_sha256 == lent]
            splits["train"] = [r for r in splits["train"] if not (r.label == label and r.image_sha256 == lent)]


def cap_per_label(records: list[FaceRecord], cap: int, seed: int) -> list[FaceRecord]:
    def order(record: FaceRecord) -> str:
        return hashlib.sha256(f"{seed}:{record.path}".encode()).hexdigest()

    kept: list[FaceRecord] = []
    taken: Counter[str] = Counter()
    for record in sorted(records, key=order):
        if taken[record.label] < cap:
            kept.append(record)
            taken[record.label] += 1
    return sorted(kept, key=lambda r: r.path)


# ---------------------------------------------------------------- the decoded cache


def build_cache(data_dir: Path, records: list[FaceRecord], size: int, cache_dir: Path) -> np.ndarray:
    """All crops as one (N, size, size, 3) uint8 memmap, in `records` order. Reused when it exists."""
    digest = hashlib.sha256("\n".join(f"{r.path}\t{size}" for r in records).encode()).hexdigest()[:16]
    path = cache_dir / f"faces-{digest}-{size}.u8"
    shape = (len(records), size, size, 3)
    if path.exists() and path.stat().st_size == int(np.prod(shape)):
        return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    array = np.memmap(partial, dtype=np.uint8, mode="w+", shape=shape)
    for index, record in enumerate(records):
        with Image.open(data_dir / record.path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
            array[index] = np.asarray(rgb)
    array.flush()
    del array
    partial.replace(path)
    return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)


class CachedFaces(Dataset):
    """uint8 CHW tensors from the memmap, with integer labels."""

    def __init__(self, images: np.ndarray, indices: np.ndarray, targets: np.ndarray):
        self.images = images
        self.indices = indices
        self.targets = targets

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        # a copy: the cache is a read-only memmap, and a tensor over read-only memory is undefined to write to
        image = torch.from_numpy(np.array(self.images[self.indices[item]], copy=True)).permute(2, 0, 1)
        return image, int(self.targets[item])


def channel_stats(images: np.ndarray, indices: np.ndarray, chunk: int = 256) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std (population) over the given images, in one streaming pass in float64:
    the statistics of the pixels, not an average of per-image standard deviations."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for start in range(0, len(indices), chunk):
        block = np.asarray(images[np.sort(indices[start : start + chunk])], dtype=np.float64) / 255.0
        total += block.sum(axis=(0, 1, 2))
        total_sq += np.square(block).sum(axis=(0, 1, 2))
        count += block.shape[0] * block.shape[1] * block.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.tolist(), std.tolist()


class FaceDataModule(pl.LightningDataModule):
    """Labelled faces from the catalog (given as records), split, capped, cached."""

    def __init__(self, data_dir: Path, records: list[FaceRecord], size: int = 128, batch_size: int = 64,
                 split: SplitConfig | None = None, num_workers: int = 0, cache_dir: Path | None = None):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.records = sorted(records, key=lambda r: r.path)
        self.size = size
        self.batch_size = batch_size
        self.split = split or SplitConfig()
        self.num_workers = num_workers
        self.cache_dir = cache_dir or self.data_dir / "cache"
        self.labels = sorted({r.label for r in self.records})
        self.splits: dict[str, list[FaceRecord]] = {}
        self.images: np.ndarray | None = None
        self.datasets: dict[str, CachedFaces] = {}

    def prepare_data(self) -> None:
        """Decode every crop once into the memmap cache (files only: no state on self here)."""
        build_cache(self.data_dir, self.records, self.size, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.splits = assign_splits(self.records, self.split)
        self.images = build_cache(self.data_dir, self.records, self.size, self.cache_dir)
        self._index()

    def _index(self) -> None:
        position = {r.path: i for i, r in enumerate(self.records)}
        index_of = {label: i for i, label in enumerate(self.labels)}
        for name, records in self.splits.items():
            indices = np.array([position[r.path] for r in records], dtype=np.int64)
            targets = np.array([index_of[r.label] for r in records], dtype=np.int64)
            self.datasets[name] = CachedFaces(self.images, indices, targets)

    def fold_validation(self) -> None:
        """Train on the validation faces too: for a validation split too small to choose checkpoints or stop
        early with (a handful of faces), 10% more training data is worth more than its noisy loss."""
        self.setup()
        self.splits["train"] = sorted(self.splits["train"] + self.splits["val"], key=lambda r: r.path)
        self.splits["val"] = []
        self._index()

    def train_stats(self) -> tuple[list[float], list[float]]:
        self.setup()
        assert self.images is not None
        return channel_stats(self.images, self.datasets["train"].indices)

    def summary(self) -> dict[str, dict[str, int]]:
        self.setup()
        return {name: dict(sorted(Counter(r.label for r in records).items())) for name, records in self.splits.items()}

    def _loader(self, name: str, shuffle: bool, drop_last: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.split.seed)
        return DataLoader(self.datasets[name], batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), drop_last=drop_last)

    def train_dataloader(self) -> DataLoader:
        # whole batches only (shuffled, every face still comes round): a last batch of 1 or 2 faces would
        # give batch norm and the step size a noisy update
        return self._loader("train", shuffle=True, drop_last=len(self.datasets["train"]) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def label_map(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def write_manifest(self, path: Path) -> None:
        self.setup()
        path.write_text(json.dumps({name: [[r.path, r.label] for r in records]
                                    for name, records in self.splits.items()}, indent=1))
