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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, NamedTuple

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps

from tasks.jobs import FaceMode

log = logging.getLogger(__name__)

CASCADE_URL = "https://raw.githubusercontent.com/nagadomi/lbpcascade_animeface/master/lbpcascade_animeface.xml"
CASCADE_SHA256 = "9376d30ac38db6bda2a68b88b3b76bbd7e6aa33af47f7f5c76bc88ca75f1ce30"
CASCADE_NAME = "lbpcascade_animeface.xml"


class CascadeError(RuntimeError):
    pass


@dataclass(frozen=True)
class FaceParams:
    """Detection and crop parameters. The values come from the settings (flows/settings.py states each default
    once; `Settings.shipped().face_params()` gives the shipped ones); the last two are no settings."""

    scale_factor: float
    min_neighbors: int
    min_size_fraction: float  # smallest face, as a fraction of the image's shorter side
    max_side: int  # larger images are scaled down for detection (boxes are scaled back)
    crop_pad_fraction: float  # mode `crops`: border added before detection, x longest side
    rotations: tuple[float, ...]  # the cascade also runs on copies rotated by these degrees
    crop_min_face_fraction: float  # mode `crops`: the face's side, at least this x the crop's shorter side
    margin: float  # the crop grows the box by this fraction of its side on every side
    face_size: int  # crops are face_size x face_size RGB
    second_detector: str | None  # a name in SECOND_DETECTORS, only once `checked_second_detector` passed it
    min_size_px: int = 24  # the cascade's window; never look for smaller faces
    # Mode `crops`: the face box at least this much inside the crop. On animeface-10 the real crops' boxes
    # are 87-92% inside (5th-50th percentile); windows cutting through a face, 68-81% (bench/crop_check.py).
    crop_min_inside: float = 0.8

    @property
    def key(self) -> str:
        """A short stable id of these parameters: part of every detection row and face file path."""
        fields = asdict(self)
        if fields["second_detector"] is None:  # the ids of catalogs detected before the setting existed
            del fields["second_detector"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


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


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit greyscale PNGs open in one of these
ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def decode_rgb(source: str | Path | IO[bytes], max_side: int | None = None) -> tuple[np.ndarray, float]:
    """Any stored image (JPEG, PNG, WebP, GIF's first frame; any mode, 16-bit greyscale included) as an
    upright RGB uint8 array (its EXIF orientation applied), and the factor from the array's pixels to the
    full-size upright picture's. Transparent areas become white.

    With `max_side`, a picture whose longer side is at least twice that is decoded reduced: JPEGs by DCT
    scaling (never fully decoded), other formats by `Image.reduce` right after decoding, before any
    conversion, so an 8k x 8k PNG costs one decoded copy and not five."""
    with Image.open(source) as image:
        image.seek(0)  # GIF: the first frame is the picture we keep
        width, height = image.size
        if image.getexif().get(ExifTags.Base.Orientation, 1) in ROTATING_ORIENTATIONS:
            width, height = height, width
        if max_side and image.format == "JPEG":
            image.draft("RGB", (max_side, max_side))  # DCT scaling: a cheap decode of huge JPEGs
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode in SIXTEEN_BIT_MODES:  # Pillow's RGB/L conversion clips 16-bit values: all white
            image = image.convert("I").point(lambda value: value / 256).convert("L")
        factor = max(image.size) // max_side if max_side else 1
        if factor > 1:
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                image = image.convert("RGBA" if _transparent(image) else "RGB")
            image = image.reduce(factor)
        rgb = to_rgb_array(image)
    return rgb, width / rgb.shape[1]


def load_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """`decode_rgb` without the factor: the picture as the person sees it, as an RGB uint8 array."""
    return decode_rgb(path, max_side)[0]


def _transparent(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    if _transparent(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------- detection


Box = tuple[int, int, int, int]  # x, y, w, h in the image's pixel coordinates


class Face(NamedTuple):
    """A face found: its box, and the angle (degrees, counter-clockwise) by which the picture was rotated
    about the box's centre for the cascade to see it upright (0: found in the picture as it is)."""

    box: Box
    angle: float = 0.0


def overlaps(a: Box, b: Box, iou: float = 0.3, contained: float = 0.6) -> bool:
    """Two boxes of one face: they overlap by `iou` or more, or `contained` of the smaller lies inside the
    larger (a tight box inside a looser one)."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return False
    inter = width * height
    area_a, area_b = a[2] * a[3], b[2] * b[3]
    return inter / (area_a + area_b - inter) >= iou or inter / min(area_a, area_b) >= contained


def rotation(shape: tuple[int, ...], angle: float) -> np.ndarray:
    """The affine matrix rotating an image of `shape` by `angle` degrees about its centre, onto a canvas of
    the same size: the corners that leave it are lost (a face there is still seen upright), and the cost
    stays one cascade pass per angle. A canvas enlarged to hold all of it has 1.7x the pixels at 20 degrees
    and found no more (60 scenes of tilted faces: recall 0.978 enlarged, 0.983 same size)."""
    height, width = shape[:2]
    return cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)


# ---------------------------------------------------------------- a second detector

SecondDetector = Callable[[np.ndarray], list[Box]]  # an RGB picture in, face boxes in its pixels out


class DetectorUnavailable(RuntimeError):
    pass


def animeface_detector() -> SecondDetector:
    """nvxs, through the `animeface` package (Apache-2.0 wrapper, NYSL library): it finds close-ups and
    monochrome pages the cascade misses. It reads Pillow's internal structures and returns no face at all
    with Pillow >= 12, without an error: hence `checked_second_detector` before any use."""
    try:
        import animeface
    except ImportError:
        raise DetectorUnavailable("the `animeface` package is not installed") from None

    def detect(rgb: np.ndarray) -> list[Box]:
        found = animeface.detect(Image.fromarray(rgb))
        return [(f.face.pos.x, f.face.pos.y, f.face.pos.width, f.face.pos.height) for f in found]

    return detect


SECOND_DETECTORS: dict[str, Callable[[], SecondDetector]] = {"animeface": animeface_detector}


@lru_cache(maxsize=8)
def checked_second_detector(name: str, check_image: Path | None) -> str | None:
    """The detector's name when it may be used: it loads and finds a face on `check_image`, a picture the
    person knows has one. None, with one warning saying why, otherwise: a detector that can return nothing
    without an error is never trusted unchecked. Once per process, so every stage of a run gets the same
    answer and the same parameter key (prepare, train and predict)."""
    why = _second_detector_fault(name, check_image)
    if why is None:
        return name
    log.warning("second face detector left out: %s; detecting with the cascade alone", why)
    return None


def _second_detector_fault(name: str, check_image: Path | None) -> str | None:
    if name not in SECOND_DETECTORS:
        return f"no second detector is called {name!r} (known: {', '.join(sorted(SECOND_DETECTORS))})"
    if check_image is None:
        return f"{name} needs YOTSUBA_FACE_CHECK_IMAGE, a picture with a face it must find there first"
    try:
        detect = SECOND_DETECTORS[name]()
        found = detect(load_rgb(check_image, max_side=1280))
    except DetectorUnavailable as exc:
        return f"{name}: {exc}"
    except Exception as exc:  # a check image that does not decode, a library that raises: not trusted
        return f"{name} could not be checked on {check_image.name}: {type(exc).__name__}: {exc}"
    if not found:
        import PIL

        hint = "; animeface finds nothing with Pillow >= 12" if name == "animeface" else ""
        return f"{name} found no face on its check image {check_image.name} (Pillow {PIL.__version__}{hint})"
    return None


class FaceDetector:
    """The cascade with its parameters, run on the picture and on copies rotated by `params.rotations`.
    Load once per thread (a cascade keeps per-image state), then call for many images."""

    def __init__(self, cascade_path: Path, params: FaceParams):
        self.params = params
        self.cascade = load_cascade(cascade_path)
        # Named in the parameters only once checked (Settings.face_params), so it is built here unchecked.
        self.second = SECOND_DETECTORS[params.second_detector]() if params.second_detector else None

    def _cascade(self, gray: np.ndarray, smallest: int) -> list[tuple[Box, int]]:
        p = self.params
        found, neighbours = self.cascade.detectMultiScale2(
            gray, scaleFactor=p.scale_factor, minNeighbors=p.min_neighbors, minSize=(smallest, smallest))
        return [(tuple(int(v) for v in box), int(n)) for box, n in zip(found, neighbours, strict=False)]

    def detect_faces(self, rgb: np.ndarray, min_side_fraction: float = 0.0) -> list[Face]:
        """Faces found upright or in a rotated copy, one per face, top to bottom. A rotated copy's box is
        mapped back by its centre and keeps its side (the cascade's own square, not the larger box around
        a tilted square); boxes of one face (overlapping or one inside the other) are merged, keeping the
        picture's own box first, then the one the cascade is surest of (most neighbours). A face found
        only in a rotated copy keeps that copy's angle, and is cut upright from it (`crop_face`)."""
        p = self.params
        height, width = rgb.shape[:2]
        scale = min(1.0, p.max_side / max(height, width))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        shorter = min(gray.shape[:2])
        smallest = max(p.min_size_px, round(shorter * max(p.min_size_fraction, min_side_fraction)))
        found = [(Face(box, 0.0), n) for box, n in self._cascade(gray, smallest)]
        if self.second is not None:  # its boxes rank below the cascade's own: neighbours -1, upright
            small = rgb if scale == 1.0 else cv2.resize(rgb, gray.shape[::-1], interpolation=cv2.INTER_AREA)
            found += [(Face(tuple(int(v) for v in box), 0.0), -1) for box in self.second(small)  # type: ignore[misc]
                      if min(box[2], box[3]) >= smallest]
        for angle in p.rotations:
            if not angle:
                continue
            matrix = rotation(gray.shape, angle)
            rotated = cv2.warpAffine(gray, matrix, gray.shape[::-1], flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
            back = cv2.invertAffineTransform(matrix)
            for (x, y, w, h), n in self._cascade(rotated, smallest):
                cx, cy = back @ np.array([x + w / 2, y + h / 2, 1.0])
                found.append((Face((int(round(cx - w / 2)), int(round(cy - h / 2)), w, h), float(angle)), n))
        # The picture's own box first: choosing the copy the cascade is surest of (most neighbours) cut 56% of
        # upright faces rotated by 20 degrees on bench scenes, and straightened tilted ones only a little.
        # A second detector's box comes last: its geometry is not the cascade's, which the crops are cut to.
        kept: list[Face] = []
        for face, _ in sorted(found, key=lambda f: (f[1] < 0, f[0].angle != 0, -f[1])):
            if not any(overlaps(face.box, other.box) for other in kept):
                kept.append(face)
        faces = [Face(tuple(int(round(v / scale)) for v in face.box), face.angle) for face in kept]  # type: ignore[misc]
        return sorted(faces, key=lambda f: (f.box[1], f.box[0]))  # stable order: top to bottom, left to right

    def detect(self, rgb: np.ndarray) -> list[Box]:
        return [face.box for face in self.detect_faces(rgb)]

    def detect_in_crop(self, rgb: np.ndarray) -> list[Face]:
        """Mode `crops`: the picture should be a face crop, and the check is made for one. It gets a
        replicated border first (the cascade needs context around a face: on animeface-10, found in 49%
        of crops as they are, 89% with a 25% border), the rotated copies are searched too, and a face
        counts only when it is what the picture is: its side at least `crop_min_face_fraction` of the
        crop's shorter side, and at least `crop_min_inside` of its box inside the crop (a window that
        cuts through a face gives a box hanging out into the border). The largest such face, or none."""
        height, width = rgb.shape[:2]
        pad = round(max(height, width) * self.params.crop_pad_fraction)
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        smallest = self.params.crop_min_face_fraction * min(height, width) / min(padded.shape[:2])
        faces = [Face((x - pad, y - pad, w, h), angle)
                 for (x, y, w, h), angle in self.detect_faces(padded, min_side_fraction=smallest)]
        inside = [face for face in faces if _inside(face.box, width, height) >= self.params.crop_min_inside]
        return [max(inside, key=lambda f: f.box[2] * f.box[3])] if inside else []


def _inside(box: Box, width: int, height: int) -> float:
    """The fraction of the box's area inside the picture (0, 0, width, height)."""
    x, y, w, h = box
    inter = max(0, min(x + w, width) - max(x, 0)) * max(0, min(y + h, height) - max(y, 0))
    return inter / (w * h) if w * h else 0.0


def crop_face(rgb: np.ndarray, box: Box, margin: float, size: int, angle: float = 0.0) -> np.ndarray:
    """The one crop function: grow the box by `margin` of its side on every side, make it square around
    its centre, pad with replicated edges where it leaves the image, resize to size x size RGB. With an
    `angle`, the square is cut upright from the picture rotated by it about the box's centre (the face as
    the cascade saw it)."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    side_px = max(1, int(round(side)))
    interpolation = cv2.INTER_AREA if side_px > size else cv2.INTER_CUBIC
    if angle:
        # The square at full resolution first (bilinear, 1:1), then resized as an upright one would be.
        matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        matrix[:, 2] += (side_px / 2 - cx, side_px / 2 - cy)
        region = cv2.warpAffine(rgb, matrix, (side_px, side_px), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(region, (size, size), interpolation=interpolation)
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    right, bottom = left + side_px, top + side_px
    height, width = rgb.shape[:2]
    pad_left, pad_top = max(0, -left), max(0, -top)
    pad_right, pad_bottom = max(0, right - width), max(0, bottom - height)
    region = rgb[max(0, top) : min(height, bottom), max(0, left) : min(width, right)]
    if pad_left or pad_top or pad_right or pad_bottom:
        region = cv2.copyMakeBorder(region, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    return cv2.resize(np.ascontiguousarray(region), (size, size), interpolation=interpolation)


def whole_image_box(rgb: np.ndarray) -> Box:
    height, width = rgb.shape[:2]
    return (0, 0, width, height)


def find_faces(detector: FaceDetector, rgb: np.ndarray, mode: FaceMode) -> list[Face]:
    if mode == FaceMode.crops_unchecked:
        return [Face(whole_image_box(rgb))]
    if mode == FaceMode.crops:
        return detector.detect_in_crop(rgb)
    return detector.detect_faces(rgb)


def crops_for(rgb: np.ndarray, faces: list[Face], params: FaceParams, mode: FaceMode) -> list[np.ndarray]:
    """The training crops of the faces found by `find_faces` (and, through `face_crops`, the prediction
    crops): one function, so both paths cut faces the same way."""
    # A whole-image "box" is already the face with its margin: do not grow it again.
    margin = 0.0 if mode == FaceMode.crops_unchecked else params.margin
    return [crop_face(rgb, face.box, margin, params.face_size, face.angle) for face in faces]
