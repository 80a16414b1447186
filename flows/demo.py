"""The offline demo: the real nightly flow against an in-process fake Reddit, read through a fake Arctic Shift as a
user without API keys reads it (or through Reddit's API with `backend="reddit"`). No credentials, no internet."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import SecretStr

from fakes.arctic import FakeArcticShift
from fakes.demo import demo_job_for_images, seed_demo, seed_images
from fakes.reddit import FakeReddit
from flows.jobfiles import using_settings
from flows.nightly import NightlyResult, nightly
from flows.settings import Settings
from tasks.jobs import FaceMode, Job


@dataclass
class DemoResult:
    job: Job
    job_file: Path
    planted: Counter[str]
    nightly: NightlyResult
    synthetic: bool


def demo_settings(settings: Settings) -> Settings:
    """A short training unless the person chose otherwise: the demo shows the loop, not the best model."""
    chosen = settings.model_fields_set
    short = {"train_epochs": 40, "train_patience": 10, "train_min_per_label": 4, "face_size": 64,
             "train_batch_size": 32, "train_min_steps": 160,
             "arctic_shift_requests_per_second": 50.0}  # the archive is a fake on this machine: no need to wait
    update = {key: value for key, value in short.items() if key not in chosen}
    return settings.model_copy(update=update)


def run_demo(settings: Settings, job: Job | None = None, images_dir: Path | None = None,
             images_per_source: int = 8, per_label: int | None = None, train: bool = True,
             backend: str = "arctic_shift") -> DemoResult:
    """Serve the job's images through a fake Reddit on 127.0.0.1 and run `nightly` on it. With `images_dir`
    (DIR/<label>/<images>), the job is made from its folders; without, synthetic characters are drawn for
    `job`, and, since the face cascade does not fire on simple drawings, each image is taken as a face."""
    settings = demo_settings(settings)
    with FakeReddit() as fake, FakeArcticShift(fake) as archive:
        if images_dir is not None:
            job = demo_job_for_images(images_dir)
            planted = seed_images(fake, job, images_dir, per_label=per_label)
        else:
            assert job is not None, "a job, or a folder of images"
            planted = seed_demo(fake, job, images_per_source=images_per_source)
            job = job.model_copy(update={"options": job.options.model_copy(
                update={"faces": FaceMode.crops_unchecked})})
        job_file = settings.data_dir / "jobs" / f"{job.name}.yaml"
        job_file.parent.mkdir(parents=True, exist_ok=True)
        job_file.write_text(yaml.safe_dump(job.model_dump(mode="json", exclude_none=True), sort_keys=False))
        keys = backend == "reddit"  # without keys, `backend: auto` reads the archive, as for most new users
        served = settings.model_copy(update={
            "reddit_client_id": SecretStr(fake.client_id) if keys else None,
            "reddit_client_secret": SecretStr(fake.client_secret) if keys else None,
            "reddit_base_url": fake.url,
            "arctic_shift_base_url": archive.url,
            "imgur_client_id": SecretStr(fake.imgur_client_id),
            "imgur_api_url": fake.url,
            "allow_private_hosts": True,  # the images are served by the fake on 127.0.0.1
        })
        with using_settings(served):
            result = nightly(str(job_file), train=train)
    return DemoResult(job, job_file, planted, result, images_dir is None)
