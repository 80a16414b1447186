"""`yotsuba review` in a real browser: click corrections on real faces, then `train` sees exactly those changes
and a second `prepare` keeps them. Screenshots of every view go to $YOTSUBA_SCREENSHOTS (docs/ for the
README) or the test's temporary directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from fakes.reddit import FakeReddit
from tests.reviewing import HAVE_FACES, NO_FACES, YOTSUBA, plant_job, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(not HAVE_FACES, reason=NO_FACES)]
LABELS = ["hatsune_miku", "hakurei_reimu", "shana"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def faces_per_label(train_summary: dict) -> Counter[str]:
    total: Counter[str] = Counter()
    for counts in train_summary["splits"].values():
        total.update(counts)
    return total


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A job prepared, trained (1 epoch) and given suggestions by the CLI, then `yotsuba review` serving it."""
    workdir = tmp_path_factory.mktemp("browser")
    with FakeReddit() as fake:
        job = plant_job(fake, workdir, LABELS, per_label=20, planted_per_label=2, groups=3, copies=2)
        nightly = json.loads(run_cli(job, "run", str(job.job_file), "--json").stdout)  # scrape ... train, one process
    first = nightly["training"]
    assert first["trained"] and nightly["review_url"].endswith("/jobs/review/suspects")
    run_cli(job, "suggest", str(job.job_file))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOTSUBA_")} | job.env
    server = subprocess.Popen([str(YOTSUBA), "review", str(job.job_file), "--port", str(port)], env=env,
                              cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if requests.get(base + "/", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"yotsuba review did not start: {server.communicate()[1][-2000:]}")
        time.sleep(0.5)
    try:
        yield job, base, first
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            pytest.fail("yotsuba review did not stop on SIGTERM within 30 s")


class Screens:
    def __init__(self, driver, directory: Path):
        self.driver, self.directory = driver, directory
        directory.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> Path:
        from PIL import Image

        target = self.directory / f"review-{name}.png"
        self.driver.save_screenshot(str(target))
        with Image.open(target) as shot:  # 256 colours: a tenth of the bytes, still readable
            shot.convert("RGB").quantize(256).save(target, optimize=True)
        return target


def test_click_corrections_then_train_and_prepare_keep_them(served, browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    job, base, first = served
    screens = Screens(browser, Path(os.environ.get("YOTSUBA_SCREENSHOTS") or tmp_path / "screens"))
    wait = WebDriverWait(browser, 20)

    def message_of(card, text: str) -> str:
        wait.until(lambda d: text in card.find_element(By.CSS_SELECTOR, ".msg").text)
        return card.find_element(By.CSS_SELECTOR, ".msg").text

    browser.get(f"{base}/jobs/review")
    assert "faces in training" in browser.page_source
    screens.take("overview")

    browser.get(f"{base}/jobs/review/labels/hatsune_miku")
    cards = browser.find_elements(By.CSS_SELECTOR, ".card")
    assert len(cards) >= 3
    relabel_undone, relabelled, excluded = cards[:3]
    # relabel by clicking, then undo in place
    Select(relabel_undone.find_element(By.NAME, "value")).select_by_value("shana")
    relabel_undone.find_element(By.CSS_SELECTOR, "button[value=relabel]").click()
    assert "now in training" in message_of(relabel_undone, "relabel shana")
    relabel_undone.find_element(By.CSS_SELECTOR, "button.undo").click()
    message_of(relabel_undone, "undone")
    # a relabel that stays
    Select(relabelled.find_element(By.NAME, "value")).select_by_value("shana")
    relabelled.find_element(By.CSS_SELECTOR, "button[value=relabel]").click()
    message_of(relabelled, "relabel shana")
    # keys: j moves from the face just relabelled to the next one, x excludes it
    browser.switch_to.active_element.send_keys("j")
    assert browser.switch_to.active_element == excluded
    browser.switch_to.active_element.send_keys("x")
    assert "out of training" in message_of(excluded, "exclude")
    screens.take("label")

    browser.get(f"{base}/jobs/review/unlabelled")
    accept = browser.find_element(By.CSS_SELECTOR, "button[value=accept_suggestion]")
    accepted_label = accept.text.removeprefix("accept ")
    assert accepted_label in LABELS
    card = accept.find_element(By.XPATH, "./ancestor::div[contains(@class, 'card')]")
    accept.click()
    message_of(card, f"accept suggestion {accepted_label}")
    screens.take("unlabelled")

    browser.get(f"{base}/jobs/review/suspects")
    assert "predicted" in browser.page_source and browser.find_elements(By.CSS_SELECTOR, "[data-rank]")
    screens.take("suspects")
    for view in ("duplicates", "conflicts", "grayscale", "corrections"):
        browser.get(f"{base}/jobs/review/{view}")
        assert browser.find_element(By.TAG_NAME, "h1").text
        screens.take(view)
    history = browser.find_element(By.TAG_NAME, "table").text
    assert history.count("undone") == 1 and "accept_suggestion" in history

    second = json.loads(run_cli(job, "train", str(job.job_file), "--json").stdout)
    expected = faces_per_label(first)
    expected["hatsune_miku"] -= 2  # one relabelled to shana, one excluded
    expected["shana"] += 1
    expected[accepted_label] += 1
    assert faces_per_label(second) == expected

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{Path(job.env['YOTSUBA_DATA_DIR']) / 'mlflow.db'}")
    runs = {run_id: client.get_run(run_id) for run_id in (first["run_id"], second["run_id"])}
    assert runs[first["run_id"]].data.params["review_corrections"] == "0"
    assert runs[second["run_id"]].data.params["review_corrections"] == "3"  # the undone relabel is not in effect
    digest = runs[second["run_id"]].data.tags["dataset_digest"]
    assert digest != runs[first["run_id"]].data.tags["dataset_digest"]
    assert runs[second["run_id"]].data.tags["review_url"].endswith("/jobs/review/suspects")
    assert runs[second["run_id"]].data.tags["review_last_correction"] == "5"  # 2 relabels, 1 undo, 1 exclude, 1 accept

    again = json.loads(run_cli(job, "prepare", str(job.job_file), "--json").stdout)
    assert again["dataset_digest"] == digest  # the rerun rebuilt prepare's rows and kept every correction

    # the nightly rule: nothing new since the second run; then one more correction is reason enough to train
    from flows.settings import Settings
    from flows.train import decide_training
    from tasks.jobs import load_job

    settings = Settings(_env_file=None, data_dir=Path(job.env["YOTSUBA_DATA_DIR"]), train_min_per_label=5)
    assert "unchanged" in decide_training(settings, load_job(job.job_file)).reason
    browser.get(f"{base}/jobs/review/suspects")  # the first suspect has the focus: x excludes it
    browser.switch_to.active_element.send_keys("x")
    message_of(browser.find_element(By.CSS_SELECTOR, ".card"), "exclude")
    decision = decide_training(settings, load_job(job.job_file))
    assert decision.train and "corrections from the review page" in decision.reason, decision.reason
