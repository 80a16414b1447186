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

    # Imgur
    imgur_client_id: SecretStr | None = None
    imgur_api_url: str = "https://api.imgur.com"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.sqlite"

    @property
    def reddit_urls(self) -> tuple[str, str]:
        """(oauth_url, reddit_url) for PRAW."""
        if self.reddit_base_url:
            base = self.reddit_base_url.rstrip("/")
            return base, base
        return REDDIT_OAUTH_URL, REDDIT_WWW_URL


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
