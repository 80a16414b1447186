"""A job for the review tests: real animeface-10 faces served through the fake Reddit, some of them planted
under the wrong label (faces of label A posted in label B's subreddit), and optionally group pictures whose
faces become the unlabelled pool."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from fakes.reddit import FakeReddit
from tests.scenes import ANIMEFACE, CASCADE, animeface_rows, compose_scene, load_face

YOTSUBA = Path(sys.executable).parent / "yotsuba"
HAVE_FACES = (ANIMEFACE / "labels.csv").exists() and CASCADE.exists()
NO_FACES = f"needs the real faces in {ANIMEFACE} and the cascade at {CASCADE}"


@dataclass
class PlantedJob:
    job_file: Path
    env: dict[str, str]
    labels: list[str]
    planted: dict[str, tuple[str, str]] = field(default_factory=dict)  # image sha256 -> (true label, posted as)
    clean: int = 0


def plant_job(fake: FakeReddit, workdir: Path, labels: list[str], per_label: int, planted_per_label: int,
              groups: int = 0, copies: int = 0, seed: int = 0, env: dict[str, str] | None = None) -> PlantedJob:
    """`per_label` faces in each label's subreddit, plus `planted_per_label` faces of the next label posted there;
    `groups` pictures of three faces each (detected: the unlabelled pool) in the first label's subreddit;
    `copies` JPEG copies of first-label faces posted again as the first label (near-duplicates) and as the
    second (cross-label conflicts)."""
    rng = random.Random(seed)
    rows = animeface_rows()
    by_label = {label: sorted((r for r in rows if r["label"] == label), key=lambda r: r["path"]) for label in labels}
    for faces in by_label.values():
        rng.shuffle(faces)
    job = PlantedJob(workdir / "job.yaml", {}, labels)
    serial = 0

    def post(subreddit: str, data: bytes, title: str, suffix: str = ".png") -> None:
        nonlocal serial
        serial += 1
        url = fake.add_image(f"/i/{serial:05d}{suffix}", data, "image/jpeg" if suffix == ".jpg" else "image/png")
        fake.add_post(subreddit, title, url=url)

    for index, label in enumerate(labels):
        for row in by_label[label][:per_label]:
            post(f"{label[:15]}_crops", (ANIMEFACE / row["path"]).read_bytes(), f"{label} art")
            job.clean += 1
        source = labels[(index + 1) % len(labels)]  # faces of the next label, posted as this one
        for row in by_label[source][per_label:per_label + planted_per_label]:
            data = (ANIMEFACE / row["path"]).read_bytes()
            job.planted[hashlib.sha256(data).hexdigest()] = (source, label)
            post(f"{label[:15]}_crops", data, f"{label} art")
    for k, row in enumerate(by_label[labels[0]][:2 * copies]):
        buffer = io.BytesIO()
        Image.open(ANIMEFACE / row["path"]).convert("RGB").save(buffer, "JPEG", quality=90)
        post(f"{labels[k % 2][:15]}_crops", buffer.getvalue(), f"{labels[k % 2]} again", ".jpg")
    used = {r["path"] for faces in by_label.values() for r in faces[:per_label + planted_per_label]}
    spare = [r for r in rows if r["path"] not in used]
    for g in range(groups):
        scene, _ = compose_scene([load_face(r) for r in rng.sample(spare, 3)], rng)
        target = workdir / f"group{g}.png"
        Image.fromarray(scene).save(target)
        post("group_pictures", target.read_bytes(), f"{labels[0]} and friends")
    sources = "".join(
        f"  - name: {label}\n    sources:\n      - {{kind: subreddit_posts, subreddit: {label[:15]}_crops}}\n"
        + ("      - {kind: subreddit_posts, subreddit: group_pictures, faces: detect}\n" if groups and i == 0 else "")
        for i, label in enumerate(labels))
    job.job_file.write_text(f"name: review\noptions: {{faces: crops_unchecked}}\nlabels:\n{sources}")
    job.env = {
        "YOTSUBA_DATA_DIR": str(workdir / "data"), "YOTSUBA_REDDIT_CLIENT_ID": fake.client_id,
        "YOTSUBA_REDDIT_CLIENT_SECRET": fake.client_secret, "YOTSUBA_REDDIT_BASE_URL": fake.url,
        "YOTSUBA_ALLOW_PRIVATE_HOSTS": "true", "YOTSUBA_CASCADE_PATH": str(CASCADE), "YOTSUBA_FACE_SIZE": "64",
        "YOTSUBA_TRAIN_EPOCHS": "1", "YOTSUBA_TRAIN_MIN_STEPS": "10", "YOTSUBA_TRAIN_MIN_PER_LABEL": "5",
        "YOTSUBA_TRAIN_BATCH_SIZE": "32",  # the review is under test, not the model: a few steps
        **(env or {}),
    }
    return job


def run_cli(job: PlantedJob, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed `yotsuba` in a subprocess, with the job's environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOTSUBA_")} | job.env
    result = subprocess.run([str(YOTSUBA), *args], capture_output=True, text=True, env=env,
                            cwd=job.job_file.parent, timeout=timeout)
    assert result.returncode == 0, f"yotsuba {' '.join(args)}: {result.stderr[-3000:]}"
    return result
