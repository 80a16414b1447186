"""Face detection throughput: our prepare path against a bare single-process cv2 loop.

Scenes are composed from the real faces of ../shared/data/animeface-10 (three faces pasted into a
900x640 canvas) and written as JPEG files. On the same files, in every round:
- bare: cv2.imread, grey, equalizeHist, detectMultiScale, nothing else, one thread;
- ours, detection only (tasks.prepare.run_tasks with keep_faces=False): decode, detect, with 1 and N threads;
- ours, full prepare: + crop files, perceptual hash and colour score, with 1 and N threads;
- ours, as shipped: full prepare with the rotated copies (FaceParams' default rotations, -20 and +20
  degrees: three cascade passes per image), with 1 and N threads. Every other variant of ours runs
  upright only (rotations=()), the bare loop's work, so that it finds the same faces as the bare loop;
- a process pool of N workers doing our detection (the design we replaced), from a cold start, for comparison.
Every variant of ours is timed from a cold start: starting the threads and loading their cascades is in the time.
Targets: ours with 1 thread within 10% of bare; ours with 2 threads at least 1.8x bare.

A VM's vCPUs are shared, so one measurement can be off by a lot: the script runs --rounds rounds, each
timing every variant back to back, and reports each round's ratios and their median. It also prints this
machine's ceiling: what N processes of pure CPU work with no data get here, against one.

    .venv/bin/python bench/detect.py [--scenes 200] [--rounds 3] [--workers N]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.settings import Settings  # noqa: E402
from tasks.faces import FaceDetector, FaceParams  # noqa: E402
from tasks.prepare import ImageTask, process_image, run_tasks  # noqa: E402
from tests.scenes import ANIMEFACE, CASCADE, animeface_rows, compose_scene, load_face  # noqa: E402


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def parallel_ceiling(workers: int, n: int = 15_000_000) -> float:
    """What this machine gives to `workers` processes of pure CPU work with no data at all, against one."""
    started = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - started
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        started = time.perf_counter()
        pool.map(_burn, [n] * workers)
        parallel = time.perf_counter() - started
    return serial / parallel


def write_scenes(directory: Path, count: int) -> list[Path]:
    rows = animeface_rows()
    rng = random.Random(0)
    rng.shuffle(rows)
    paths = []
    for index in range(count):
        faces = [load_face(rows[(3 * index + k) % len(rows)]) for k in range(3)]
        scene, _ = compose_scene(faces, rng)
        path = directory / f"scene{index:04d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def bare_loop(paths: list[Path], params: FaceParams) -> tuple[float, int]:
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    cascade = cv2.CascadeClassifier(str(CASCADE))
    started = time.perf_counter()
    faces = 0
    for path in paths:
        gray = cv2.equalizeHist(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY))
        smallest = max(params.min_size_px, round(min(gray.shape[:2]) * params.min_size_fraction))
        found = cascade.detectMultiScale(gray, scaleFactor=params.scale_factor, minNeighbors=params.min_neighbors,
                                         minSize=(smallest, smallest))
        faces += len(found)
    elapsed = time.perf_counter() - started
    cv2.setNumThreads(previous)
    return elapsed, faces


def image_tasks(paths: list[Path], out: Path, keep: bool) -> list[ImageTask]:
    return [ImageTask(f"{i:064x}", str(p), 900, 640, "detect", str(out), "dhash", 8, keep) for i, p in enumerate(paths)]


def ours(paths: list[Path], params: FaceParams, workers: int, out: Path, keep: bool) -> tuple[float, int]:
    tasks = image_tasks(paths, out, keep)
    started = time.perf_counter()
    faces = sum(len(result.boxes) for result in run_tasks(tasks, CASCADE, params, workers))
    return time.perf_counter() - started, faces


_detector: FaceDetector | None = None
_params: FaceParams | None = None


def _process_init(params: dict) -> None:
    global _detector, _params
    cv2.setNumThreads(1)
    _params = FaceParams(**params)
    _detector = FaceDetector(CASCADE, _params)


def _process_one(task: ImageTask):
    return process_image(task, _detector, _params)  # type: ignore[arg-type]


def process_pool(paths: list[Path], params: FaceParams, workers: int, out: Path) -> tuple[float, int]:
    """The replaced design: a pool of processes from a fork server that has imported our code, one image a
    message. Cold start, as a prepare run would have it."""
    tasks = image_tasks(paths, out, keep=False)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tasks.prepare"])
    started = time.perf_counter()
    with context.Pool(workers, initializer=_process_init, initargs=(asdict(params),)) as pool:
        faces = sum(len(result.boxes) for result in pool.imap_unordered(_process_one, tasks, chunksize=1))
    return time.perf_counter() - started, faces


VARIANTS = {  # name -> (what it is, the target it is held to)
    "detect-1": ("ours, detection only, 1 thread", "overhead <= +10%"),
    "detect-N": ("ours, detection only, {n} threads", ">= 1.8x bare on 2 cores"),
    "prepare-1": ("ours, full prepare (+ crops, dhash, colour), 1 thread", ""),
    "prepare-N": ("ours, full prepare, {n} threads", ""),
    "processes-N": ("a process pool of {n} (the replaced design), detection only", ""),
    "shipped-1": ("ours as shipped: full prepare with rotated copies, 1 thread", ""),
    "shipped-N": ("ours as shipped: full prepare with rotated copies, {n} threads", ""),
}


def one_round(paths: list[Path], params: FaceParams, workers: int, out: Path) -> dict[str, float]:
    """Seconds of every variant, back to back, and a check that each upright variant found what the bare
    loop found (the shipped ones find more: the faces count is printed)."""
    bare_s, bare_faces = bare_loop(paths, params)
    seconds = {"bare": bare_s}
    for name, run in {
        "detect-1": lambda: ours(paths, params, 1, out / "d1", keep=False),
        "detect-N": lambda: ours(paths, params, workers, out / "dn", keep=False),
        "prepare-1": lambda: ours(paths, params, 1, out / "p1", keep=True),
        "prepare-N": lambda: ours(paths, params, workers, out / "pn", keep=True),
        "processes-N": lambda: process_pool(paths, params, workers, out / "pp"),
        "shipped-1": lambda: ours(paths, Settings.shipped().face_params(), 1, out / "s1", keep=True),
        "shipped-N": lambda: ours(paths, Settings.shipped().face_params(), workers, out / "sn", keep=True),
    }.items():
        seconds[name], faces = run()
        if name.startswith("shipped"):
            seconds["shipped_faces"] = faces
        else:
            assert faces == bare_faces, (name, faces, bare_faces)
    seconds["faces"] = bare_faces
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    if not ANIMEFACE.exists() or not CASCADE.exists():
        sys.exit("needs ../shared/data/animeface-10 and ../shared/cascade beside the checkout")
    params, n, workers = dataclasses.replace(Settings.shipped().face_params(), rotations=()), args.scenes, args.workers
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_scenes(Path(tmp), n)
        ceilings = []
        for index in range(args.rounds):
            ceilings.append(parallel_ceiling(workers))
            rounds.append(one_round(paths, params, workers, Path(tmp) / f"round{index}"))
            r = rounds[-1]
            print(f"round {index + 1}: bare {n / r['bare']:.1f} images/s; "
                  + ", ".join(f"{name} {ratio(r, name):.2f}x" for name in VARIANTS)
                  + f"; ceiling {ceilings[-1]:.2f}x", flush=True)
    print()
    print(f"{n} scenes of 900x640 with 3 real faces each; {rounds[0]['faces']:.0f} faces found by every upright "
          f"variant, {rounds[0]['shipped_faces']:.0f} by the shipped ones; "
          f"{os.cpu_count()} cores; {args.rounds} rounds; medians, with the range over rounds:")
    print(f"  this machine's ceiling for {workers} processes of pure CPU work: {span(ceilings)} one")
    bare = [n / r["bare"] for r in rounds]
    print(f"  bare cv2 loop, 1 thread: {statistics.median(bare):.2f} images/s ({min(bare):.2f}-{max(bare):.2f})")
    for name, (what, target) in VARIANTS.items():
        ratios = [ratio(r, name) for r in rounds]
        shown = span(ratios) + " bare"
        if name.startswith("shipped"):
            upright = "prepare" + name[len("shipped"):]
            cost = [r[name] / r[upright] for r in rounds]
            shown += f"; {span(cost)} the time of the upright-only {upright}"
        elif name.endswith("-1"):
            overheads = [r[name] / r["bare"] - 1 for r in rounds]
            shown = f"overhead {statistics.median(overheads):+.1%} ({min(overheads):+.1%} to {max(overheads):+.1%})"
        print(f"  {what.format(n=workers)}: {statistics.median(n / r[name] for r in rounds):.2f} images/s, "
              f"{shown}" + (f"  [target {target}]" if target else ""))


def ratio(seconds: dict[str, float], name: str) -> float:
    return seconds["bare"] / seconds[name]


def span(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    main()
