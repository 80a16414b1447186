"""The one settings object. Read at the edges (CLI, flows) and passed down as explicit arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.errors import UserError

REDDIT_OAUTH_URL = "https://oauth.reddit.com"
REDDIT_WWW_URL = "https://www.reddit.com"


class Settings(BaseSettings):
    """Every knob of yotsuba, from `YOTSUBA_*` environment variables or a `.env` file."""

    model_config = SettingsConfigDict(
        env_prefix="YOTSUBA_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        env_ignore_empty=True,  # VAR= (compose's unset placeholders) means "the default", not an empty value
    )

    data_dir: Path = Field(Path("./yotsuba-data"), description="Catalog, image store, faces, datasets.")

    # Reddit. Secrets stay SecretStr so that repr(), logs and MLflow params never show them.
    reddit_client_id: SecretStr | None = None
    reddit_client_secret: SecretStr | None = None
    reddit_user_agent: SecretStr = SecretStr("python:yotsuba-net:0.1 (anime face dataset builder)")
    reddit_base_url: str | None = Field(
        None, description="Replaces both PRAW's oauth_url and reddit_url (a test server, a proxy)."
    )
    reddit_max_rate_limit_waits: int = Field(5, ge=0, description="429 answers waited out per call.")
    reddit_max_wait_seconds: float = Field(120.0, gt=0, description="Longest single 429 back-off.")
    reddit_timeout_seconds: float = Field(30.0, gt=0)
    reddit_requests_per_minute: float = Field(
        100.0, gt=0, description="Reddit's limit per client id, shared by every scrape task (and worker).")

    # Arctic Shift: Reddit's posts and comments without keys (tasks.arctic)
    arctic_shift_base_url: str = Field(
        "https://arctic-shift.photon-reddit.com", description="The archive's API (a test server, a mirror).")
    arctic_shift_requests_per_second: float = Field(
        1.0, gt=0, description="Shared by every scrape task of a process, and across workers on a Prefect server.")
    arctic_shift_user_agent: str = "python:yotsuba-net:0.1 (anime face dataset builder; key-free Reddit archive reader)"
    arctic_shift_timeout_seconds: float = Field(30.0, gt=0)
    arctic_shift_max_attempts: int = Field(5, ge=1, le=20, description="Per request: 429s, 5xx, resets, timeouts.")
    arctic_shift_max_wait_seconds: float = Field(120.0, gt=0, description="Longest single wait (Retry-After).")

    # Downloading
    download_concurrency: int = Field(16, ge=1, le=256, description="Downloads in flight at once.")
    download_per_host: int = Field(8, ge=1, le=256, description="Connections to one host at once.")
    download_connect_timeout: float = Field(10.0, gt=0)
    download_read_timeout: float = Field(30.0, gt=0, description="Longest silence while reading a body.")
    download_total_timeout: float = Field(
        120.0, gt=0, description="Longest time one URL may take, every attempt and back-off included.")
    download_max_attempts: int = Field(4, ge=1, le=20)
    download_max_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="Bodies over this are rejected.")
    download_max_pixels: int = Field(64_000_000, ge=1, description="Decompression-bomb guard.")
    allow_private_hosts: bool = Field(False, description="Fetch from loopback/private addresses (tests only).")

    # Preparing: face detection and crops (tasks.faces.FaceParams)
    cascade_path: Path | None = Field(None, description="lbpcascade_animeface.xml; default: downloaded once.")
    face_scale_factor: float = Field(1.1, gt=1.0, le=2.0)
    face_min_neighbors: int = Field(5, ge=0)
    face_min_size_fraction: float = Field(0.04, ge=0, le=1, description="Smallest face / image's shorter side.")
    face_max_side: int = Field(1280, ge=64, description="Larger images are scaled down for detection.")
    face_rotations: list[float] = Field([-20.0, 20.0], description="Degrees: the cascade also runs on copies "
                                        "rotated by these (each costs one more pass); [] for upright only.")
    face_crop_pad_fraction: float = Field(0.25, ge=0, le=2, description="Border added to crops before detection.")
    face_crop_min_face_fraction: float = Field(0.4, ge=0, le=1, description="`faces: crops`: the face's side "
                                               "must be at least this x the crop's shorter side.")
    face_margin: float = Field(0.2, ge=0, le=2, description="Crop = box grown by this fraction on every side.")
    face_size: int = Field(128, ge=16, le=1024, description="Crops are face_size x face_size pixels.")
    face_second_detector: Literal["animeface"] | None = Field(
        None, description="A detector besides the cascade, used only once it finds a face on face_check_image.")
    face_check_image: Path | None = Field(None, description="A picture with a face: the second detector must "
                                          "find one there, or it is left out with a warning.")
    prepare_workers: int = Field(0, ge=0, description="Detection threads; 0: one per core.")

    # Cleaning: near-duplicates and grayscale (tasks.prepare.CleanParams)
    dedupe_hash: Literal["phash", "dhash", "ahash"] = "dhash"
    dedupe_hash_size: int = Field(8, ge=4, le=16)
    dedupe_threshold: int = Field(4, ge=0, le=32, description="Hamming distance for near-duplicates.")
    grayscale_threshold: float | None = Field(None, ge=0, description="Default: the calibrated one.")

    # Training (models.training.TrainConfig)
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "YOTSUBA_MLFLOW_TRACKING_URI"),
        description="Default: SQLite in the data directory.",
    )
    train_normalization: Literal["per_image", "dataset", "imagenet"] = "per_image"
    train_pretrained: bool = Field(False, description="Start from torchvision's ImageNet weights.")
    train_epochs: int = Field(60, ge=1, description="At least; small datasets get more to reach min_steps.")
    train_patience: int = Field(15, ge=1, description="Early stopping: epochs without a better val/loss.")
    train_batch_size: int = Field(64, ge=1, description="At most: bounded by a quarter of the training set.")
    train_min_steps: int = Field(600, ge=1, description="Optimizer steps at least, whatever the epochs.")
    train_min_val_faces: int = Field(
        50, ge=0, description="A smaller validation split is trained on (no early stopping, last weights).")
    train_lr: float = Field(3e-3, gt=0)
    train_weight_decay: float = Field(0.05, ge=0)
    train_max_per_label: int | None = Field(None, ge=1, description="Training faces per label (seeded pick).")
    train_min_per_label: int = Field(10, ge=3, description="Labels with fewer faces are left out (and named).")
    train_trusted_per_label: int = Field(30, ge=1, description="Labels with fewer faces are flagged as uncertain.")
    train_min_test_faces: int = Field(20, ge=1, description="A smaller test split cannot move the champion alias.")
    train_seed: int = 0
    train_accelerator: str = "auto"
    train_devices: str = "auto"
    train_strategy: str = "auto"
    train_precision: str = "auto"
    train_num_workers: int = Field(0, ge=0)
    train_min_new_faces: int = Field(20, ge=0, description="Nightly: train only when this many new faces came.")

    # Orchestration (Prefect)
    task_runner: Literal["local", "dask"] = Field(
        "local", description="Where detection batches run: threads here, or a Dask cluster.")
    dask_address: str | None = Field(None, description="An existing Dask scheduler; unset: a LocalCluster.")
    dask_workers: int = Field(0, ge=0, description="LocalCluster worker processes; 0: one per core.")
    task_retries: int = Field(2, ge=0, description="Retries of a network task that met transient errors.")
    task_retry_delay_seconds: float = Field(
        30.0, ge=0, description="First retry delay; doubled each time, with jitter.")
    prepare_batch_size: int = Field(256, ge=1, description="Images per detection task (the unit of fan-out).")
    nightly_cron: str = Field("0 3 * * *", description="`yotsuba serve`: when the nightly run starts.")
    nightly_timezone: str = Field("UTC", description="`yotsuba serve`: the cron's timezone (IANA name).")
    mlflow_ui_url: str | None = Field(
        None, description="Base of links to MLflow runs; default: the tracking server, else http://127.0.0.1:5000.")
    server_check_timeout: float = Field(5.0, gt=0, description="Seconds to wait for the MLflow/Prefect servers.")

    # The review page (`yotsuba review`)
    review_host: str = Field("127.0.0.1", description="Where the review page listens; beyond loopback, anyone "
                                                      "who reaches it can read and correct the dataset.")
    review_port: int = Field(8765, ge=1, le=65535)
    review_url: str | None = Field(None, description="Base of links to the review page; default: http://HOST:PORT.")

    # Imgur
    imgur_client_id: SecretStr | None = None
    imgur_api_url: str = "https://api.imgur.com"

    @classmethod
    def shipped(cls) -> Settings:
        """Every field at its default, whatever the environment says: what ships (benches, tests)."""
        return cls.model_construct()

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.sqlite"

    def download_config(self):  # -> tasks.download.DownloadConfig
        from tasks.download import DownloadConfig

        return DownloadConfig(
            concurrency=self.download_concurrency, per_host=self.download_per_host,
            connect_timeout=self.download_connect_timeout, read_timeout=self.download_read_timeout,
            total_timeout=self.download_total_timeout, max_attempts=self.download_max_attempts,
            max_bytes=self.download_max_bytes,
            max_pixels=self.download_max_pixels, allow_private_hosts=self.allow_private_hosts,
        )

    def face_params(self):  # -> tasks.faces.FaceParams
        from tasks.faces import FaceParams

        return FaceParams(
            scale_factor=self.face_scale_factor, min_neighbors=self.face_min_neighbors,
            min_size_fraction=self.face_min_size_fraction, max_side=self.face_max_side,
            rotations=tuple(self.face_rotations), crop_pad_fraction=self.face_crop_pad_fraction,
            crop_min_face_fraction=self.face_crop_min_face_fraction, margin=self.face_margin,
            face_size=self.face_size, second_detector=self.second_detector(),
        )

    def second_detector(self) -> str | None:
        """The second detector's name once it has found a face on the check image; None (and one warning per
        process) when it is configured and has not."""
        if self.face_second_detector is None:
            return None
        from tasks.faces import checked_second_detector

        return checked_second_detector(self.face_second_detector, self.face_check_image)

    def clean_params(self):  # -> tasks.prepare.CleanParams
        from tasks.prepare import CleanParams

        extra = {} if self.grayscale_threshold is None else {"grayscale_threshold": self.grayscale_threshold}
        return CleanParams(hash_kind=self.dedupe_hash, hash_size=self.dedupe_hash_size,
                           hash_threshold=self.dedupe_threshold, **extra)

    def cascade_file(self) -> Path:
        """The cascade to load: YOTSUBA_CASCADE_PATH, or upstream's, downloaded once and checked."""
        from tasks.faces import ensure_cascade

        return ensure_cascade(self.cascade_path, self.data_dir / "models")

    def train_config(self):  # -> models.training.TrainConfig
        from models.classifier import Normalization
        from models.training import TrainConfig

        return TrainConfig(
            normalization=Normalization(self.train_normalization), pretrained=self.train_pretrained,
            epochs=self.train_epochs, patience=self.train_patience, batch_size=self.train_batch_size,
            min_steps=self.train_min_steps, min_val_faces=self.train_min_val_faces,
            lr=self.train_lr, weight_decay=self.train_weight_decay, face_size=self.face_size,
            max_per_label=self.train_max_per_label, min_per_label=self.train_min_per_label,
            trusted_per_label=self.train_trusted_per_label, min_test_faces=self.train_min_test_faces,
            seed=self.train_seed,
            accelerator=self.train_accelerator, devices=self.train_devices, strategy=self.train_strategy,
            precision=self.train_precision, num_workers=self.train_num_workers,
        )

    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    def mlflow_ui(self) -> str:
        """Where a person opens the MLflow UI: the tracking server itself, or `mlflow ui`'s default."""
        if self.mlflow_ui_url:
            return self.mlflow_ui_url.rstrip("/")
        uri = self.tracking_uri()
        return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"

    def review_link(self, job: str, view: str = "suspects") -> str:
        """Where a person opens the review page's `view` for `job` (nightly summaries and MLflow runs link here)."""
        base = (self.review_url or f"http://{self.review_host}:{self.review_port}").rstrip("/")
        return f"{base}/jobs/{job}/{view}"

    @property
    def has_reddit_keys(self) -> bool:
        return bool(secret_value(self.reddit_client_id) and secret_value(self.reddit_client_secret))

    def scrape_backend(self, job):  # (tasks.jobs.Job) -> tasks.jobs.Backend
        """The backend a job's scrape uses: its `options.backend`, `auto` meaning Reddit's API when keys are
        configured and Arctic Shift when not."""
        from tasks.jobs import Backend

        chosen = job.options.backend
        if chosen != Backend.auto:
            return chosen
        return Backend.reddit if self.has_reddit_keys else Backend.arctic_shift

    @property
    def reddit_urls(self) -> tuple[str, str]:
        """(oauth_url, reddit_url) for PRAW."""
        if self.reddit_base_url:
            base = self.reddit_base_url.rstrip("/")
            return base, base
        return REDDIT_OAUTH_URL, REDDIT_WWW_URL


class SettingsError(UserError):
    """Settings that cannot be read: one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))

    def lines(self) -> list[str]:
        return self.problems


def check_env_file(path: Path = Path(".env")) -> None:
    """A `.env` that cannot be read as UTF-8 is a SettingsError, raised before Prefect is imported (Prefect's
    own settings read the same file on import and would fail with a traceback)."""
    try:
        path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise SettingsError([f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}); "
                             "save it as UTF-8"]) from None
    except OSError as exc:
        raise SettingsError([f"{path}: cannot be read ({exc.strerror})"]) from None


def read_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `.env`, or a SettingsError that says which variable or file is wrong."""
    check_env_file()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            problems.append(f"setting YOTSUBA_{field.upper()}: {error['msg']}")
        raise SettingsError(problems) from None


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
