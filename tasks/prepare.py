"""Prepare and clean: stored images -> face crops -> the job's dataset view.

1. Detection, in parallel over threads (each loads the cascade once): every stored image of
   the job without a detection row for the current parameters gets one, and each face becomes a crop
   file `faces/<params>-<mode>/<sha[:2]>/<sha256>-<i>.png` with its box, angle and perceptual hash. An
   image with one face gives a labelled crop, with several unlabelled crops, with none a row saying so. A
   file that cannot be read now gets no verdict (tried again next run); bytes that do not decode do.
2. Cleaning, over the whole job (cheap: it reads hashes and scores from the catalog): grayscale/manga
   images are flagged, near-duplicate faces are clustered (the best member is kept), and clusters whose
   labelled faces carry two labels are excluded and reported. The result is the `dataset` table: a view
   over the catalog. No file is ever deleted; crop files missing from disk are cut again first.
"""

from __future__ import annotations

import io
import logging
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tasks import catalog
from tasks.dataset import dataset_view
from tasks.dedupe import clusters_from_pairs, near_duplicate_pairs, perceptual_hash
from tasks.faces import Face, FaceDetector, FaceParams, crops_for, decode_rgb, find_faces
from tasks.grayscale import DEFAULT_GRAYSCALE_THRESHOLD, colour_score
from tasks.jobs import FaceMode, Job, source_key

log = logging.getLogger(__name__)

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
MODE_PRIORITY = (FaceMode.crops_unchecked, FaceMode.crops, FaceMode.detect)  # same bytes, declared a crop: a crop


@dataclass(frozen=True)
class CleanParams:
    """From the settings (flows/settings.py states each default once), but the calibrated grayscale threshold."""

    hash_kind: str  # phash | dhash | ahash
    hash_size: int  # hash_size**2 bits
    hash_threshold: int  # faces within this Hamming distance are near-duplicates
    grayscale_threshold: float = DEFAULT_GRAYSCALE_THRESHOLD

    @property
    def hash_name(self) -> str:
        return f"{self.hash_kind}{self.hash_size}"


# ---------------------------------------------------------------- the worker side


@dataclass(frozen=True)
class ImageTask:
    sha256: str
    path: str  # absolute
    width: int  # as stored (boxes are reported in the full-size picture's upright coordinates)
    height: int
    mode: str
    faces_dir: str  # absolute: where this parameter set's crops go
    hash_kind: str
    hash_size: int
    keep_faces: bool = True  # False: detect only (no crop files, hashes or colour score); the benchmark's baseline


@dataclass
class ImageResult:
    sha256: str
    mode: str
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    angles: list[float] = field(default_factory=list)  # per face: tasks.faces.Face.angle
    paths: list[str] = field(default_factory=list)  # absolute
    hashes: list[str] = field(default_factory=list)
    grayscale_score: float | None = None
    error: str | None = None
    transient: bool = False  # the file could not be read (missing, no permission): tried again next run


def write_crop(target: Path, crop: np.ndarray) -> None:
    """A crop file: Huffman-only PNG (faster and smaller here)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    target.write_bytes(encoded.tobytes())


def process_image(task: ImageTask, detector: FaceDetector | None, params: FaceParams) -> ImageResult:
    """Detect, crop, hash and score one stored image: a path in, paths and numbers out. `detector` is this
    thread's own (a cascade keeps per-image state, so two threads must never share one); None only when
    every image is a crop taken whole."""
    result = ImageResult(task.sha256, task.mode)
    try:
        data = Path(task.path).read_bytes()
    except OSError as exc:  # the file, not its bytes: missing or unreadable now, so no verdict is recorded
        result.error, result.transient = f"{type(exc).__name__}: {exc}", True
        return result
    buffer = io.BytesIO(data)
    try:
        rgb, scale = decode_rgb(buffer, max_side=2 * params.max_side)
    except Exception as exc:  # bytes that do not decode: a verdict, recorded, never fatal
        result.error = f"{type(exc).__name__}: {exc}".replace(repr(buffer), Path(task.path).name)
        return result
    mode = FaceMode(task.mode)
    faces = find_faces(detector, rgb, mode)  # type: ignore[arg-type]  # None only with crops_unchecked
    result.boxes = [tuple(int(round(v * scale)) for v in face.box) for face in faces]  # type: ignore[misc]
    result.angles = [face.angle for face in faces]
    if not task.keep_faces:
        return result
    crops = crops_for(rgb, faces, params, mode)
    directory = Path(task.faces_dir) / task.sha256[:2]
    directory.mkdir(parents=True, exist_ok=True)
    for index, crop in enumerate(crops):
        target = directory / f"{task.sha256}-{index}.png"
        # Written straight to its name, every time: a crop half-written by a killed run has no catalog row,
        # so the rerun does this image again and overwrites it.
        write_crop(target, crop)
        result.paths.append(str(target))
        result.hashes.append(f"{perceptual_hash(Image.fromarray(crop), task.hash_kind, task.hash_size):x}")
    if faces:  # only faces are kept or dropped for colour: an image without one needs no score
        result.grayscale_score = colour_score(Image.fromarray(rgb))
    return result


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """OpenCV's own thread pool off while detecting: our threads already use every core, and its threads
    would fight them. The setting is process-wide, so it is put back afterwards."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def run_tasks(tasks: list[ImageTask], cascade_path: Path | None, params: FaceParams,
              workers: int) -> Iterator[ImageResult]:
    """Results as they complete, over `workers` threads (this thread alone when workers == 1).

    Threads, not processes: OpenCV and Pillow release the GIL while they decode, detect, resize and encode,
    so two threads keep two cores busy with nothing to start, import or pickle. bench/detect.py runs both
    from a cold start on 2 cores: 2 threads 1.86x a bare one-thread cv2 loop, a pool of 2 processes 1.64x
    (it spends 0.5-1.3 s of a 10 s run starting); a thread starts in the time of loading its cascade
    (6 ms each). Each thread loads its own cascade once, on its first image.
    """
    if not tasks:
        return
    local = threading.local()

    def detect(task: ImageTask) -> ImageResult:
        detector = getattr(local, "detector", None)
        if detector is None and cascade_path is not None:
            detector = local.detector = FaceDetector(Path(cascade_path), params)
        return process_image(task, detector, params)

    workers = max(1, min(workers, len(tasks)))
    with opencv_single_threaded():
        if workers == 1:
            yield from map(detect, tasks)
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="detect") as executor:
            # A few images in flight per thread, not the whole list: a consumer that stops early (an error
            # while recording) waits for a handful of images, not for the batch.
            queue = iter(tasks)
            pending = {executor.submit(detect, task) for task in islice(queue, 2 * workers)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    following = next(queue, None)
                    if following is not None:
                        pending.add(executor.submit(detect, following))
                    yield future.result()


# ---------------------------------------------------------------- which images, which mode


@dataclass
class JobImage:
    sha256: str
    ext: str
    width: int
    height: int
    labels: set[str]
    mode: FaceMode
    first_seen: float


def job_images(conn: sqlite3.Connection, job: Job) -> list[JobImage]:
    """Every stored image of the job, with the labels it was found for and the face mode of its sources."""
    modes = {source_key(label.name, source): source.faces or job.options.faces for label, source in job.iter_sources()}
    rows = conn.execute(
        """SELECT i.sha256, i.ext, i.width, i.height, c.label, c.source_key, d.fetched_at
           FROM candidates c JOIN downloads d ON d.candidate_id = c.id JOIN images i ON i.sha256 = d.sha256
           WHERE c.job = ? ORDER BY d.fetched_at""",
        (job.name,),
    )
    images: dict[str, JobImage] = {}
    for sha, ext, width, height, label, key, fetched in rows:
        mode = modes.get(key, job.options.faces)  # a source since removed from the job: the job default
        image = images.get(sha)
        if image is None:
            images[sha] = JobImage(sha, ext, width, height, {label}, mode, fetched)
        else:
            image.labels.add(label)
            if MODE_PRIORITY.index(mode) < MODE_PRIORITY.index(image.mode):
                image.mode = mode
    return list(images.values())


# ---------------------------------------------------------------- the stage


@dataclass
class PrepareSummary:
    job: str
    images: int = 0  # stored images of the job
    processed: int = 0  # detected in this run (the rest had a row for these parameters)
    unreadable: int = 0  # bytes that do not decode: a verdict, final
    read_failed: int = 0  # files missing or unreadable in this run: no verdict, tried again next run
    restored: int = 0  # crop files recorded in the catalog but missing on disk, cut again
    faces_found: int = 0  # in this run
    no_face: int = 0  # images of the job with no face (all runs)
    per_label: dict[str, Counter[str]] = field(default_factory=dict)  # label -> status/role -> faces
    cross_label_clusters: list[dict[str, Any]] = field(default_factory=list)
    dataset_digest: str = ""
    pictures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job, "images": self.images, "processed": self.processed, "unreadable": self.unreadable,
            "read_failed": self.read_failed, "restored": self.restored,
            "faces_found": self.faces_found, "no_face": self.no_face,
            "per_label": {label: dict(sorted(c.items())) for label, c in sorted(self.per_label.items())},
            "cross_label_clusters": self.cross_label_clusters, "dataset_digest": self.dataset_digest,
            "pictures": self.pictures, "seconds": round(self.seconds, 2),
        }


def faces_dir(data_dir: Path, params: FaceParams, mode: FaceMode) -> Path:
    return data_dir / "faces" / f"{params.key}-{mode.value}"


def detection_todo(conn: sqlite3.Connection, data_dir: Path, images: list[JobImage], params: FaceParams,
                   clean: CleanParams) -> list[ImageTask]:
    """The images with no detection row for these parameters and mode: the work of this run."""
    done = {(row[0], row[1]) for row in conn.execute(  # a file that could not be read has no verdict yet
        "SELECT sha256, mode FROM detections WHERE params = ? AND NOT transient", (params.key,))}
    return [
        ImageTask(image.sha256, str(data_dir / "images" / image.sha256[:2] / f"{image.sha256}.{image.ext}"),
                  image.width, image.height, image.mode.value, str(faces_dir(data_dir, params, image.mode)),
                  clean.hash_kind, clean.hash_size)
        for image in images if (image.sha256, image.mode.value) not in done
    ]


def needs_cascade(todo: list[ImageTask]) -> bool:
    return any(task.mode != FaceMode.crops_unchecked.value for task in todo)


def add_result(summary: PrepareSummary, result: ImageResult) -> None:
    summary.processed += 1
    if result.transient:
        summary.read_failed += 1
        log.warning("could not read %s (%s): tried again on the next run", result.sha256[:12], result.error)
    elif result.error is not None:
        summary.unreadable += 1
        log.warning("image %s does not decode (%s): recorded, skipped", result.sha256[:12], result.error)
    summary.faces_found += len(result.boxes)


def record_detection(conn: sqlite3.Connection, data_dir: Path, params: FaceParams, clean: CleanParams,
                     result: ImageResult) -> None:
    with catalog.transaction(conn):
        conn.execute(
            """INSERT OR REPLACE INTO detections
               (sha256, params, mode, faces, grayscale_score, error, transient, done_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (result.sha256, params.key, result.mode, None if result.error else len(result.boxes),
             result.grayscale_score, result.error, int(result.transient), time.time()),
        )
        for index, (box, angle, path, hash_hex) in enumerate(
                zip(result.boxes, result.angles, result.paths, result.hashes, strict=True)):
            conn.execute(
                """INSERT INTO faces (sha256, params, mode, idx, x, y, w, h, angle, path, hash_kind, hash)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (sha256, params, mode, idx) DO UPDATE SET x = excluded.x, y = excluded.y,
                       w = excluded.w, h = excluded.h, angle = excluded.angle, path = excluded.path,
                       hash_kind = excluded.hash_kind, hash = excluded.hash""",
                (result.sha256, params.key, result.mode, index, *box, angle,
                 str(Path(path).relative_to(data_dir)), clean.hash_name, hash_hex),
            )


def restore_face_files(conn: sqlite3.Connection, data_dir: Path, images: list[JobImage], params: FaceParams,
                       summary: PrepareSummary | None = None) -> int:
    """Crop files are derived: those the catalog records but the disk lacks (a deleted `faces/`) are cut
    again from the stored image with the recorded box and angle, as detection cut them. An image that
    cannot be read either loses its verdict (its faces leave the dataset) and is detected again next run.
    Returns the number of crop files written."""
    missing: dict[tuple[str, str], list[sqlite3.Row]] = defaultdict(list)
    modes = {image.sha256: image.mode.value for image in images}
    for row in conn.execute(
        "SELECT sha256, mode, idx, x, y, w, h, angle, path FROM faces WHERE params = ? ORDER BY sha256, idx",
        (params.key,),
    ):
        if modes.get(row["sha256"]) == row["mode"] and not (data_dir / row["path"]).exists():
            missing[(row["sha256"], row["mode"])].append(row)
    ext = {image.sha256: image.ext for image in images}
    written = 0
    for (sha, mode), rows in missing.items():
        try:
            rgb, scale = decode_rgb(data_dir / "images" / sha[:2] / f"{sha}.{ext[sha]}", max_side=2 * params.max_side)
        except Exception as exc:  # the image is gone too: no verdict any more; detected again when it is back
            with catalog.transaction(conn):
                conn.execute(
                    """UPDATE detections SET faces = NULL, transient = 1, error = ?
                       WHERE sha256 = ? AND params = ? AND mode = ?""",
                    (f"crop files and image unreadable: {type(exc).__name__}: {exc}", sha, params.key, mode))
            if summary is not None:
                summary.read_failed += 1
            log.warning("crops of %s are gone and the image cannot be read (%s): detected again next run",
                        sha[:12], exc)
            continue
        faces = [Face(tuple(round(v / scale) for v in (r["x"], r["y"], r["w"], r["h"])), r["angle"])  # type: ignore[misc]
                 for r in rows]
        for row, crop in zip(rows, crops_for(rgb, faces, params, FaceMode(mode)), strict=True):
            target = data_dir / row["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            write_crop(target, crop)
            written += 1
    if summary is not None:
        summary.restored += written
    if written:
        log.warning("%d face crop files were missing: cut again from the stored images", written)
    return written


def clean_job(conn: sqlite3.Connection, data_dir: Path, job: Job, images: list[JobImage], params: FaceParams,
              clean: CleanParams, summary: PrepareSummary) -> list[dict[str, Any]]:
    """Rebuild the job's `dataset` rows from detections: roles, grayscale, near-duplicates, cross-label."""
    by_sha = {image.sha256: image for image in images}
    detections = {
        (row["sha256"], row["mode"]): row for row in conn.execute(
            "SELECT sha256, mode, faces, grayscale_score FROM detections WHERE params = ?", (params.key,))
    }
    faces: list[dict[str, Any]] = []
    summary.no_face = 0
    for image in images:
        detection = detections.get((image.sha256, image.mode.value))
        if detection is None or detection["faces"] is None:
            continue
        if detection["faces"] == 0:
            summary.no_face += 1
            continue
        gray = detection["grayscale_score"] is not None and detection["grayscale_score"] < clean.grayscale_threshold
        for row in conn.execute(
            """SELECT id, path, hash_kind, hash, w, h FROM faces
               WHERE sha256 = ? AND params = ? AND mode = ? ORDER BY idx""",
            (image.sha256, params.key, image.mode.value),
        ):
            faces.append({
                "id": row["id"], "path": row["path"], "sha256": image.sha256,
                "hash": _face_hash(conn, data_dir, row, clean),
                "role": "labelled" if detection["faces"] == 1 else "unlabelled",
                "labels": sorted(by_sha[image.sha256].labels), "grayscale": gray,
                "area": image.width * image.height, "first_seen": image.first_seen,
            })

    candidates = [f for f in faces if not f["grayscale"]]
    hashes = np.array([int(f["hash"], 16) for f in candidates], dtype=np.uint64)
    pairs = near_duplicate_pairs(hashes, clean.hash_threshold) if len(candidates) > 1 else np.empty((0, 2), int)
    cluster_of = clusters_from_pairs(len(candidates), pairs) if candidates else np.empty(0, np.int64)
    members: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for face, cluster in zip(candidates, cluster_of, strict=True):
        face["cluster"] = int(candidates[int(cluster)]["id"])
        members[int(cluster)].append(face)

    statuses: dict[int, str] = {f["id"]: "grayscale" for f in faces if f["grayscale"]}
    reports = []
    for group in members.values():
        labelled = [f for f in group if f["role"] == "labelled"]
        labels = sorted({label for f in labelled for label in f["labels"]})
        if len(labels) > 1:  # the same face under two names: trust neither
            for f in labelled:
                statuses[f["id"]] = "cross_label"
            reports.append({"cluster": group[0]["cluster"], "labels": labels,
                            "faces": [f["path"] for f in labelled]})
        # keep the best: labelled before unlabelled, then the largest source image, then the earliest
        best = min(group, key=lambda f: (f["role"] != "labelled", -f["area"], f["first_seen"], f["id"]))
        for f in group:
            statuses.setdefault(f["id"], "kept" if f is best else "duplicate")

    with catalog.transaction(conn):
        conn.execute("DELETE FROM dataset WHERE job = ?", (job.name,))
        conn.executemany(
            "INSERT INTO dataset (job, face_id, label, role, status, cluster) VALUES (?, ?, ?, ?, ?, ?)",
            [(job.name, f["id"], label, f["role"], statuses[f["id"]], f.get("cluster"))
             for f in faces for label in f["labels"]],
        )
    summary.per_label = {label.name: Counter() for label in job.labels}
    for f in faces:
        for label in f["labels"]:
            status = statuses[f["id"]]
            summary.per_label.setdefault(label, Counter())[status if status != "kept" else f["role"]] += 1
    summary.cross_label_clusters = reports
    summary.dataset_digest = dataset_view(conn, job).digest
    return faces


def _face_hash(conn: sqlite3.Connection, data_dir: Path, row: sqlite3.Row, clean: CleanParams) -> str:
    """The face's hash of the configured kind; computed from its crop when the settings changed."""
    if row["hash_kind"] == clean.hash_name and row["hash"]:
        return row["hash"]
    with Image.open(data_dir / row["path"]) as crop:
        value = f"{perceptual_hash(crop, clean.hash_kind, clean.hash_size):x}"
    conn.execute("UPDATE faces SET hash_kind = ?, hash = ? WHERE id = ?", (clean.hash_name, value, row["id"]))
    return value


def unlabelled_faces(conn: sqlite3.Connection, job: str) -> list[tuple[int, str, str]]:
    """(face id, path, the label its image was found for) of the kept unlabelled faces: the pool to classify."""
    return [(row[0], row[1], row[2]) for row in conn.execute(
        """SELECT DISTINCT f.id, f.path, d.label FROM dataset d JOIN faces f ON f.id = d.face_id
           WHERE d.job = ? AND d.role = 'unlabelled' AND d.status = 'kept' ORDER BY f.id""", (job,))]


def finish_prepare(conn: sqlite3.Connection, data_dir: Path, job: Job, images: list[JobImage], params: FaceParams,
                   clean: CleanParams, summary: PrepareSummary, make_pictures: bool = True) -> None:
    """Cleaning and pictures: over the whole job, after detection."""
    restore_face_files(conn, data_dir, images, params, summary)
    faces = clean_job(conn, data_dir, job, images, params, clean, summary)
    if make_pictures:
        from tasks.pictures import dataset_pictures

        out_dir = data_dir / "datasets" / job.name
        summary.pictures = [str(p) for p in dataset_pictures(data_dir, out_dir, faces, conn, job.name, summary)]
