"""The one settings object. Read at the edges (CLI, flows) and passed down as explicit arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REDDIT_OAUTH_URL = "https://oauth.reddit.com"
REDDIT_WWW_URL = "https://www.reddit.com"


class Settings(BaseSettings):
    """Every knob of yotsuba, from `YOTSUBA_*` environment variables or a `.env` file."""

    model_config = SettingsConfigDict(
        env_prefix="YOTSUBA_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
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

    # Downloading
    download_concurrency: int = Field(16, ge=1, le=256, description="Downloads in flight at once.")
    download_per_host: int = Field(8, ge=1, le=256, description="Connections to one host at once.")
    download_connect_timeout: float = Field(10.0, gt=0)
    download_read_timeout: float = Field(30.0, gt=0, description="Longest silence while reading a body.")
    download_max_attempts: int = Field(4, ge=1, le=20)
    download_max_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="Bodies over this are rejected.")
    download_max_pixels: int = Field(64_000_000, ge=1, description="Decompression-bomb guard.")
    allow_private_hosts: bool = Field(False, description="Fetch from loopback/private addresses (tests only).")

    # Imgur
    imgur_client_id: SecretStr | None = None
    imgur_api_url: str = "https://api.imgur.com"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.sqlite"

    def download_config(self):  # -> tasks.download.DownloadConfig
        from tasks.download import DownloadConfig

        return DownloadConfig(
            concurrency=self.download_concurrency, per_host=self.download_per_host,
            connect_timeout=self.download_connect_timeout, read_timeout=self.download_read_timeout,
            max_attempts=self.download_max_attempts, max_bytes=self.download_max_bytes,
            max_pixels=self.download_max_pixels, allow_private_hosts=self.allow_private_hosts,
        )

    @property
    def reddit_urls(self) -> tuple[str, str]:
        """(oauth_url, reddit_url) for PRAW."""
        if self.reddit_base_url:
            base = self.reddit_base_url.rstrip("/")
            return base, base
        return REDDIT_OAUTH_URL, REDDIT_WWW_URL


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
