from __future__ import annotations

import os
import tempfile

# Before Prefect is imported anywhere: Prefect's local API for this session in a directory of its own (no
# test touches ~/.prefect), no analytics, a generous start-up time on a busy CI machine, and no INFO lines
# from Prefect's console handler (it would write to pytest's closed capture at exit).
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="yotsuba-tests-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
from pathlib import Path

import pytest

from fakes.arctic import FakeArcticShift
from fakes.reddit import FakeReddit
from flows.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def fake_reddit():
    """A fake Reddit + Imgur on 127.0.0.1 with small comment pages, so `more` stubs and
    "continue this thread" links appear in small threads."""
    with FakeReddit(comments_per_level=3, max_depth=3) as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, fake_reddit: FakeReddit) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        reddit_client_id=fake_reddit.client_id,
        reddit_client_secret=fake_reddit.client_secret,
        reddit_base_url=fake_reddit.url,
        imgur_client_id=fake_reddit.imgur_client_id,
        imgur_api_url=fake_reddit.url,
        reddit_max_wait_seconds=5,
    )


@pytest.fixture
def fake_arctic(fake_reddit: FakeReddit):
    """A fake Arctic Shift serving the fake Reddit's posts and comments."""
    with FakeArcticShift(fake_reddit) as fake:
        yield fake


@pytest.fixture
def arctic_settings(settings: Settings, fake_arctic: FakeArcticShift) -> Settings:
    """A user without Reddit keys (so `backend: auto` reads Arctic Shift), against the fake archive. Faster than
    the polite default pace, which one test checks on its own; short back-offs."""
    return settings.model_copy(update={
        "reddit_client_id": None, "reddit_client_secret": None,
        "arctic_shift_base_url": fake_arctic.url, "arctic_shift_requests_per_second": 500.0,
        "arctic_shift_max_wait_seconds": 0.5,
    })


@pytest.fixture
def yotsuba_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_reddit: FakeReddit) -> dict[str, str]:
    """Environment for running the `yotsuba` CLI against the fake Reddit, as a user would configure it."""
    env = {
        "YOTSUBA_DATA_DIR": str(tmp_path / "data"),
        "YOTSUBA_REDDIT_CLIENT_ID": fake_reddit.client_id,
        "YOTSUBA_REDDIT_CLIENT_SECRET": fake_reddit.client_secret,
        "YOTSUBA_REDDIT_BASE_URL": fake_reddit.url,
        "YOTSUBA_IMGUR_CLIENT_ID": fake_reddit.imgur_client_id,
        "YOTSUBA_IMGUR_API_URL": fake_reddit.url,
    }
    for key in [k for k in os.environ if k.startswith("YOTSUBA_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env from the working directory
    return env
