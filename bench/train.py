"""Training throughput: our Lightning training against a bare PyTorch loop with the same model, data, batch,
augmentation and optimizer, plus the data pipeline alone, all measured in one run.

Data: the real faces of ../shared/data/animeface-10 through our memmap cache (random images when absent).
On CUDA both loops use bf16 autocast and channels_last, and GPU utilisation is sampled with nvidia-smi.

    .venv/bin/python bench/train.py [--steps 30 --batch 64 --size 128]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytorch_lightning as pl  # noqa: E402

from models.classifier import (  # noqa: E402
    ClassifierModule,
    FaceClassifier,
    Normalization,
    augment,
    make_normalization,
    resnet18,
)
from models.data import FaceDataModule, FaceRecord, SplitConfig  # noqa: E402

ANIMEFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "animeface-10"


def records(tmp: Path) -> tuple[Path, list[FaceRecord]]:
    if (ANIMEFACE / "labels.csv").exists():
        with open(ANIMEFACE / "provenance.csv", newline="") as handle:
            sha = {row["path"]: row["sha256"] for row in csv.DictReader(handle)}
        with open(ANIMEFACE / "labels.csv", newline="") as handle:
            return ANIMEFACE, [FaceRecord(r["path"], r["label"], sha[r["path"]]) for r in csv.DictReader(handle)]
    from PIL import Image

    print("animeface-10 absent: random images instead")
    rng = np.random.default_rng(0)
    out = []
    for i in range(600):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(tmp / f"{i}.png")
        out.append(FaceRecord(f"{i}.png", f"l{i % 10}", f"{i:064x}"))
    return tmp, out


class GpuSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5)
                self.samples.append(float(out.stdout.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            time.sleep(0.2)


def model_for(datamodule: FaceDataModule, device: torch.device) -> FaceClassifier:
    torch.manual_seed(0)
    model = FaceClassifier(resnet18(len(datamodule.labels)), make_normalization(Normalization.per_image),
                           datamodule.labels).to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def batches(datamodule: FaceDataModule, steps: int):
    count = 0
    while True:
        for batch in datamodule.train_dataloader():
            yield batch
            count += 1
            if count == steps:
                return


def bare_loop(datamodule: FaceDataModule, steps: int, warmup: int, device: torch.device) -> float:
    model = model_for(datamodule, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    seen, started = 0, None
    for step, (images, targets) in enumerate(batches(datamodule, steps + warmup)):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started, seen = time.perf_counter(), 0
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        images = augment(images)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = F.cross_entropy(model(images).float(), targets, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


class Timer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.seen, self.started = warmup, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.warmup and self.started is None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self.started is not None:
            self.seen += len(batch[1])

    def rate(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return self.seen / (time.perf_counter() - self.started)


def lightning_loop(datamodule: FaceDataModule, steps: int, warmup: int, device: torch.device) -> float:
    module = ClassifierModule(model_for(datamodule, device), lr=1e-3, channels_last=device.type == "cuda")
    timer = Timer(warmup)
    trainer = pl.Trainer(max_steps=steps + warmup, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                         precision="bf16-mixed" if device.type == "cuda" else "32-true", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(module, datamodule=datamodule)
    return timer.rate()


def data_only(datamodule: FaceDataModule, steps: int, device: torch.device) -> float:
    seen, started = 0, time.perf_counter()
    for images, targets in batches(datamodule, steps):
        images = augment(images.to(device, non_blocking=True))
        seen += len(targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        root, recs = records(Path(tmp))
        datamodule = FaceDataModule(root, recs, size=args.size, batch_size=args.batch, num_workers=args.workers,
                                    split=SplitConfig(min_per_label=3), cache_dir=Path(tmp) / "cache")
        datamodule.prepare_data()
        datamodule.setup()
        sampler = GpuSampler() if device.type == "cuda" else None
        if sampler:
            sampler.start()
        data_rate = data_only(datamodule, args.steps, device)
        # Alternate the two, twice, and keep each one's best: the first runs of a process pay one-off costs
        # (allocator growth, oneDNN/cuDNN kernel selection) that would otherwise favour whichever ran second.
        bare_runs, ours_runs = [], []
        for _ in range(args.repeats):
            bare_runs.append(bare_loop(datamodule, args.steps, args.warmup, device))
            ours_runs.append(lightning_loop(datamodule, args.steps, args.warmup, device))
        bare, ours = max(bare_runs), max(ours_runs)
        if sampler:
            sampler.stop.set()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; ResNet18 at {args.size}px, batch {args.batch}, {args.steps} timed steps after "
          f"{args.warmup} warm-up; {'bf16 autocast, channels_last' if device.type == 'cuda' else 'fp32'}")
    print(f"data pipeline alone (memmap cache + augmentation): {data_rate:9.1f} images/s")
    print(f"bare PyTorch loop:                                 {bare:9.1f} images/s  (runs: "
          f"{', '.join(f'{r:.1f}' for r in bare_runs)})")
    print(f"ours (LightningModule + Trainer):                  {ours:9.1f} images/s  {ours / bare:.3f}x bare "
          f"(target >= 0.95x; runs: {', '.join(f'{r:.1f}' for r in ours_runs)})")
    print(f"data pipeline / step rate:                         {data_rate / bare:9.1f}x (the step is the bottleneck "
          "when this is well above 1)")
    if sampler and sampler.samples:
        print(f"GPU utilisation while training: mean {np.mean(sampler.samples):.0f}% over {len(sampler.samples)} "
              "samples")


if __name__ == "__main__":
    main()
