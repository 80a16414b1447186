"""Anime face detection (lbpcascade_animeface) and the one crop function.

`crop_face` is used to make the training crops here and again at prediction time, so a model always
sees faces cut the same way. Detection parameters and the crop geometry are one frozen `FaceParams`;
its `key` names the work, so changing a parameter redoes detection and an unchanged rerun does nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tasks.jobs import FaceMode

log = logging.getLogger(__name__)

CASCADE_URL = "https://raw.githubusercontent.com/nagadomi/lbpcascade_animeface/master/lbpcascade_animeface.xml"
CASCADE_SHA256 = "9376d30ac38db6bda2a68b88b3b76bbd7e6aa33af47f7f5c76bc88ca75f1ce30"
CASCADE_NAME = "lbpcascade_animeface.xml"


class CascadeError(RuntimeError):
    pass


@dataclass(frozen=True)
class FaceParams:
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size_fraction: float = 0.04  # smallest face, as a fraction of the image's shorter side
    min_size_px: int = 24  # the cascade's window; never look for smaller faces
    max_side: int = 1280  # larger images are scaled down for detection (boxes are scaled back)
    crop_pad_fraction: float = 0.25  # mode `crops`: border added before detection, x longest side
    margin: float = 0.2  # the crop grows the box by this fraction of its side on every side
    face_size: int = 128  # crops are face_size x face_size RGB

    @property
    def key(self) -> str:
        """A short stable id of these parameters: part of every detection row and face file path."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- the cascade


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_cascade(configured: Path | None, cache_dir: Path, url: str = CASCADE_URL,
                   sha256: str = CASCADE_SHA256, timeout: float = 60.0) -> Path:
    """The cascade file to load: the configured one (YOTSUBA_CASCADE_PATH), or a copy downloaded once from
    upstream into `cache_dir` and checked against its published sha256."""
    if configured is not None:
        if not configured.is_file():
            raise CascadeError(f"YOTSUBA_CASCADE_PATH={configured} does not exist")
        actual = file_sha256(configured)
        if actual != sha256:
            log.warning("cascade %s has sha256 %s, not upstream's %s: using it anyway", configured, actual, sha256)
        return configured
    cached = cache_dir / CASCADE_NAME
    if cached.is_file() and file_sha256(cached) == sha256:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f".{CASCADE_NAME}.{uuid.uuid4().hex}.part"
    try:
        log.info("downloading the face cascade from %s", url)
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a fixed https URL
            data = response.read()
    except OSError as exc:
        raise CascadeError(
            f"cannot download the face cascade from {url} ({exc}); download it by hand and set "
            "YOTSUBA_CASCADE_PATH to the file"
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise CascadeError(f"the cascade downloaded from {url} has sha256 {actual}, expected {sha256}: not used")
    partial.write_bytes(data)
    os.replace(partial, cached)
    return cached


def load_cascade(path: Path) -> cv2.CascadeClassifier:
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise CascadeError(f"OpenCV could not load a cascade from {path}")
    return classifier


# ---------------------------------------------------------------- images


def load_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Any stored image (JPEG, PNG, WebP, GIF's first frame; any mode) as an RGB uint8 array.
    Transparent areas become white. With `max_side`, JPEGs are decoded at a reduced scale when much larger."""
    with Image.open(path) as image:
        if max_side and image.format == "JPEG":
            image.draft("RGB", (max_side, max_side))  # DCT scaling: a cheap decode of huge JPEGs
        image.seek(0)
        return to_rgb_array(image)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------- detection


Box = tuple[int, int, int, int]  # x, y, w, h in the image's pixel coordinates


class FaceDetector:
    """The cascade with its parameters. Load once per process (a worker), then call for many images."""

    def __init__(self, cascade_path: Path, params: FaceParams):
        self.params = params
        self.cascade = load_cascade(cascade_path)

    def detect(self, rgb: np.ndarray) -> list[Box]:
        p = self.params
        height, width = rgb.shape[:2]
        scale = min(1.0, p.max_side / max(height, width))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        smallest = max(p.min_size_px, round(min(gray.shape[:2]) * p.min_size_fraction))
        found = self.cascade.detectMultiScale(gray, scaleFactor=p.scale_factor, minNeighbors=p.min_neighbors,
                                              minSize=(smallest, smallest))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in (found if len(found) else [])]
        return sorted(boxes, key=lambda b: (b[1], b[0]))  # stable order: top to bottom, left to right

    def detect_in_crop(self, rgb: np.ndarray) -> list[Box]:
        """Mode `crops`: a tight crop gets a replicated border first (the cascade needs context around a
        face: on animeface-10, found in 49% of crops as they are, 89% with a 25% border)."""
        height, width = rgb.shape[:2]
        pad = round(max(height, width) * self.params.crop_pad_fraction)
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        return [(x - pad, y - pad, w, h) for x, y, w, h in self.detect(padded)]


def crop_face(rgb: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    """The one crop function: grow the box by `margin` of its side on every side, make it square around
    its centre, pad with replicated edges where it leaves the image, resize to size x size RGB."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    side_px = max(1, int(round(side)))
    right, bottom = left + side_px, top + side_px
    height, width = rgb.shape[:2]
    pad_left, pad_top = max(0, -left), max(0, -top)
    pad_right, pad_bottom = max(0, right - width), max(0, bottom - height)
    region = rgb[max(0, top) : min(height, bottom), max(0, left) : min(width, right)]
    if pad_left or pad_top or pad_right or pad_bottom:
        region = cv2.copyMakeBorder(region, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if side_px > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(region), (size, size), interpolation=interpolation)


def whole_image_box(rgb: np.ndarray) -> Box:
    height, width = rgb.shape[:2]
    return (0, 0, width, height)


def find_faces(detector: FaceDetector, rgb: np.ndarray, mode: FaceMode) -> list[Box]:
    if mode == FaceMode.crops_unchecked:
        return [whole_image_box(rgb)]
    if mode == FaceMode.crops:
        return detector.detect_in_crop(rgb)
    return detector.detect(rgb)


def crops_for(rgb: np.ndarray, boxes: list[Box], params: FaceParams, mode: FaceMode) -> list[np.ndarray]:
    # A whole-image "box" is already the face with its margin: do not grow it again.
    margin = 0.0 if mode == FaceMode.crops_unchecked else params.margin
    return [crop_face(rgb, box, margin, params.face_size) for box in boxes]
