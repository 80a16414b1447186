"""The offline demo: the real pipeline against an in-process fake Reddit. No credentials, no internet."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pydantic import SecretStr

from fakes.demo import seed_demo
from fakes.reddit import FakeReddit
from flows.download import download
from flows.prepare import prepare
from flows.scrape import scrape_job
from flows.settings import Settings
from tasks.download import DownloadSummary
from tasks.jobs import FaceMode, Job
from tasks.prepare import PrepareSummary
from tasks.scrape import ProgressCallback, ScrapeSummary


@dataclass
class DemoResult:
    planted: Counter[str]
    scrape: ScrapeSummary
    download: DownloadSummary
    prepare: PrepareSummary


def run_demo(settings: Settings, job: Job, images_per_source: int = 6,
             on_post: ProgressCallback | None = None) -> DemoResult:
    with FakeReddit() as fake:
        planted = seed_demo(fake, job, images_per_source=images_per_source)
        demo_settings = settings.model_copy(update={
            "reddit_client_id": SecretStr(fake.client_id),
            "reddit_client_secret": SecretStr(fake.client_secret),
            "reddit_base_url": fake.url,
            "imgur_client_id": SecretStr(fake.imgur_client_id),
            "imgur_api_url": fake.url,
            "allow_private_hosts": True,  # the images are served by the fake on 127.0.0.1
        })
        scraped = scrape_job(demo_settings, job, on_post=on_post)
        downloaded = download(demo_settings, job)
    # The cascade does not fire on simple drawings: the demo's synthetic images are taken as face crops.
    as_crops = job.model_copy(update={"options": job.options.model_copy(update={"faces": FaceMode.crops_unchecked})})
    return DemoResult(planted, scraped, downloaded, prepare(demo_settings, as_crops))
