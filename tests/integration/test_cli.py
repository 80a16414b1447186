"""The `yotsuba` command line, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes.reddit import FakeReddit
from flows.cli import app
from tasks.jobs import load_job
from tests.scenes import ANIMEFACE, CASCADE

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
YOTSUBA = Path(sys.executable).parent / "yotsuba"
runner = CliRunner()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed console script in a subprocess: what a user's shell runs."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("YOTSUBA_")}
    full_env.update(env or {})
    return subprocess.run([str(YOTSUBA), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


def test_validate_accepts_the_shipped_examples():
    for example in ("examples/gotoubun.yaml", "examples/legacy-gotoubun.json"):
        result = runner.invoke(app, ["job", "validate", str(ROOT / example), "--json"])
        assert result.exit_code == 0, result.output
        assert {lbl["name"] for lbl in json.loads(result.stdout)["labels"]} >= {"miku", "yotsuba"}


def test_validate_bad_file_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
name: Bad Name
labels:
  - name: miku
    sources:
      - {kind: subreddit_posts, subreddit: "no spaces allowed"}
      - {kind: tiktok, subreddit: anime}
      - {kind: comment_links, subreddit: anime, querry: typo}
""")
    result = run_cli("job", "validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{bad}: ")]
    assert any(line.endswith("is not a job name (lowercase letters, digits, _ or -; it names the MLflow experiment)")
               and ": name: " in line for line in lines)
    assert any("labels[0].sources[0].subreddit:" in line and "not a subreddit name" in line for line in lines)
    assert any("labels[0].sources[1]:" in line and "unknown source kind 'tiktok'" in line for line in lines)
    assert any("labels[0].sources[2].querry: unknown field" in line for line in lines)
    assert any("labels[0].sources[2].query:" in line and "Field required" in line for line in lines)


def test_validate_reports_yaml_syntax_errors_with_a_line_number(tmp_path: Path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nlabels:\n  - name: [unclosed\n")
    result = runner.invoke(app, ["job", "validate", str(bad)])
    assert result.exit_code == 2
    assert "invalid YAML at line" in result.stderr


def test_job_new_from_flags_writes_a_valid_file(tmp_path: Path):
    target = tmp_path / "quints.yaml"
    result = runner.invoke(app, [
        "job", "new", str(target), "--name", "quints", "-l", "miku", "-l", "nino",
        "--alias", "miku=Nakano Miku", "--character-sub", "miku=Nakano_Miku", "--show", "5ToubunNoHanayome",
        "--thread-sub", "anime", "--thread-query", "Gotoubun Episode Discussion", "--thread-flair", "Episode",
    ])
    assert result.exit_code == 0, result.output
    job = load_job(target)
    miku = job.label("miku")
    assert miku.aliases == ["Nakano Miku"]
    assert [s.kind for s in miku.sources] == ["subreddit_posts", "title_mentions", "comment_links"]
    assert miku.sources[2].flair == "Episode" and miku.sources[2].subreddit == "anime"
    assert [s.kind for s in job.label("nino").sources] == ["title_mentions", "comment_links"]

    again = runner.invoke(app, ["job", "new", str(target), "-l", "x", "--show", "anime"])
    assert again.exit_code == 2 and "--force" in again.stderr


def test_job_new_interactive_prompts(tmp_path: Path):
    target = tmp_path / "prompted.json"
    answers = "\n".join(["prompted", "miku, nino", "Nakano Miku", "Nakano_Miku", "", "", "5ToubunNoHanayome",
                         "Episode Discussion", "anime", ""]) + "\n"
    result = runner.invoke(app, ["job", "new", str(target), "--interactive"], input=answers)
    assert result.exit_code == 0, result.output
    job = load_job(target)
    assert job.name == "prompted" and [lbl.name for lbl in job.labels] == ["miku", "nino"]
    assert job.label("miku").aliases == ["Nakano Miku"]
    assert [s.kind for s in job.label("miku").sources] == ["subreddit_posts", "title_mentions", "comment_links"]


def test_job_new_rejects_bad_flags(tmp_path: Path):
    result = runner.invoke(app, ["job", "new", str(tmp_path / "x.yaml"), "-l", "miku", "--alias", "nino=Nino",
                                 "--show", "anime"])
    assert result.exit_code == 2
    assert "'nino' is not one of the labels" in result.stderr


def test_job_convert_writes_our_format(tmp_path: Path):
    target = tmp_path / "converted.yaml"
    result = runner.invoke(app, ["job", "convert", str(ROOT / "examples/legacy-gotoubun.json"), str(target)])
    assert result.exit_code == 0, result.output
    job = load_job(target)
    yotsuba = job.label("yotsuba")
    assert [(s.kind, s.subreddit) for s in yotsuba.sources] == [
        ("comment_links", "anime"), ("title_mentions", "5ToubunNoHanayome")]


def test_scrape_prints_table_and_json(fake_reddit: FakeReddit, yotsuba_env: dict[str, str], tmp_path: Path):
    fake_reddit.add_post("Nakano_Miku", "Miku", url="https://i.redd.it/a.jpeg")
    fake_reddit.add_post("Nakano_Miku", "Miku video", url="https://v.redd.it/abc", is_video=True)
    job = tmp_path / "job.yaml"
    job.write_text("name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]\n")

    result = run_cli("scrape", str(job), env=yotsuba_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 new candidates" in result.stdout and "video" in result.stdout

    again = run_cli("scrape", str(job), "--json", env=yotsuba_env, cwd=tmp_path)
    summary = json.loads(again.stdout)
    assert summary["new_candidates"] == 0 and summary["sources"][0]["stopped_at_seen"] is True
    assert (Path(yotsuba_env["YOTSUBA_DATA_DIR"]) / "catalog.sqlite").exists()


def test_scrape_through_reddit_without_credentials_says_how_to_set_them(tmp_path: Path):
    """`backend: reddit` asks for Reddit's API; without keys (`auto`) the archive is read instead."""
    job = tmp_path / "job.yaml"
    job.write_text("name: t\noptions: {backend: reddit}\nlabels:\n  - name: miku\n"
                   "    sources: [{kind: subreddit_posts, subreddit: x_y}]\n")
    result = run_cli("scrape", str(job), env={"YOTSUBA_DATA_DIR": str(tmp_path / "d")}, cwd=tmp_path)
    assert result.returncode == 1
    assert "YOTSUBA_REDDIT_CLIENT_ID" in result.stderr and "Traceback" not in result.stderr


def test_secrets_never_reach_output_or_logs(fake_reddit: FakeReddit, yotsuba_env: dict[str, str], tmp_path: Path):
    fake_reddit.add_post("Nakano_Miku", "Miku", url="https://imgur.com/a/AlB12")
    fake_reddit.add_imgur_album("AlB12", ["https://i.imgur.com/one11.jpg"])
    job = tmp_path / "job.yaml"
    job.write_text("name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]\n")
    result = run_cli("-vv", "scrape", str(job), "--json", env=yotsuba_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["new_candidates"] == 1
    assert "prawcore" in result.stderr or "Fetching" in result.stderr  # debug logging really was on
    for secret in (fake_reddit.client_secret, fake_reddit.imgur_client_id):
        assert secret not in result.stdout and secret not in result.stderr


def test_dotenv_in_working_directory_is_read(fake_reddit: FakeReddit, yotsuba_env: dict[str, str], tmp_path: Path):
    fake_reddit.add_post("Nakano_Miku", "Miku", url="https://i.redd.it/a.jpeg")
    env = dict(yotsuba_env)
    secret = env.pop("YOTSUBA_REDDIT_CLIENT_SECRET")
    (tmp_path / ".env").write_text(f"YOTSUBA_REDDIT_CLIENT_SECRET={secret}\n")
    job = tmp_path / "job.yaml"
    job.write_text("name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]\n")
    result = run_cli("scrape", str(job), "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["new_candidates"] == 1


@pytest.mark.parametrize("backend", ["arctic_shift", "reddit"])
def test_demo_runs_offline_on_all_three_source_kinds(tmp_path: Path, backend: str):
    result = run_cli("--data-dir", str(tmp_path / "demo"), "demo", "--per-source", "2", "--no-train", "--json",
                     "--backend", backend, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["scrape"]["backend"] == backend
    assert summary["planted"] == {"subreddit_posts": 4, "title_mentions": 10, "comment_links": 10}
    assert summary["scrape"]["new_candidates"] == 24 and not summary["scrape"]["errors"]
    kinds = {kind for by_kind in summary["scrape"]["new_by_label"].values() for kind, n in by_kind.items() if n}
    assert kinds == {"subreddit_posts", "title_mentions", "comment_links"}
    assert summary["download"]["candidates"]["downloaded"] == 24
    assert len(list((tmp_path / "demo" / "images").glob("*/*.png"))) == 24
    assert summary["prepare"]["faces_found"] == 24  # drawn characters, each taken as a face crop
    assert summary["training"]["trained"] is False and "not asked" in summary["training"]["reason"]


@pytest.mark.slow
@pytest.mark.skipif(not (ANIMEFACE / "labels.csv").exists() or not CASCADE.exists(),
                    reason=f"needs the real faces in {ANIMEFACE} and the cascade at {CASCADE}")
def test_demo_on_real_pictures_detects_trains_and_tracks(tmp_path: Path):
    import shutil

    for label in ("shana", "hakurei_reimu", "izumi_konata"):
        (tmp_path / "pictures" / label).mkdir(parents=True)
        for path in sorted((ANIMEFACE / label).glob("*.png"))[:30]:
            shutil.copy(path, tmp_path / "pictures" / label / path.name)
    env = {"YOTSUBA_CASCADE_PATH": str(CASCADE), "YOTSUBA_TRAIN_EPOCHS": "3", "YOTSUBA_TRAIN_MIN_STEPS": "8"}
    result = run_cli("--data-dir", str(tmp_path / "demo"), "demo", "--images", str(tmp_path / "pictures"),
                     "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    fetched = summary["download"]["candidates"]
    assert sum(summary["planted"].values()) == 90 == fetched["downloaded"] + fetched["duplicate"]  # exact copies
    assert summary["prepare"]["faces_found"] >= 0.8 * fetched["downloaded"]  # tight crops, padded and checked
    training = summary["training"]
    assert training["trained"] is True and training["registered_version"] == "1", training
    assert "test/acc" in training["metrics"] and "/#/experiments/" in training["run_url"]
    assert (tmp_path / "demo" / "mlflow.db").exists()


def test_download_after_scrape_end_to_end(fake_reddit: FakeReddit, yotsuba_env: dict[str, str], tmp_path: Path):
    from tests.imaging import image_bytes

    fake_reddit.add_post("Nakano_Miku", "Miku", url=fake_reddit.add_image("/i/a.jpeg", image_bytes(seed=1)))
    fake_reddit.add_post("Nakano_Miku", "Miku again", url=fake_reddit.add_image("/i/b.png", image_bytes("PNG")))
    fake_reddit.add_post("Nakano_Miku", "gone", url=f"{fake_reddit.url}/i/missing.jpeg")
    fake_reddit.add_post("Nakano_Miku", "a page", url=fake_reddit.add_image("/i/page.jpg", b"<html></html>"))
    job = tmp_path / "job.yaml"
    job.write_text("name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]\n")
    env = {**yotsuba_env, "YOTSUBA_ALLOW_PRIVATE_HOSTS": "true"}
    assert run_cli("scrape", str(job), env=env, cwd=tmp_path).returncode == 0

    table = run_cli("download", str(job), env=env, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "downloaded (new image)" in table.stdout and "not_an_image" in table.stdout

    again = run_cli("download", str(job), "--json", env=env, cwd=tmp_path)
    assert json.loads(again.stdout)["urls_fetched"] == 0
    data = Path(env["YOTSUBA_DATA_DIR"])
    assert len(list((data / "images").glob("*/*"))) == 2


def test_download_refuses_loopback_by_default(fake_reddit: FakeReddit, yotsuba_env: dict[str, str], tmp_path: Path):
    from tests.imaging import image_bytes

    fake_reddit.add_post("Nakano_Miku", "Miku", url=fake_reddit.add_image("/i/a.jpeg", image_bytes(seed=1)))
    job = tmp_path / "job.yaml"
    job.write_text("name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]\n")
    assert run_cli("scrape", str(job), env=yotsuba_env, cwd=tmp_path).returncode == 0
    result = run_cli("download", str(job), "--json", env=yotsuba_env, cwd=tmp_path)
    assert json.loads(result.stdout)["rejected"] == {"private_host": 1}


def quiet(result: subprocess.CompletedProcess) -> None:
    """No library noise a person cannot act on (the known warnings, MLflow's progress bars and prints)."""
    for noise in ("LeafSpec", "Pickle or CloudPickle", "Downloading artifacts", "not writable",
                  "on_after_batch_transfer", "Successfully registered model", "litlogger"):
        assert noise not in result.stderr + result.stdout, noise


@pytest.mark.slow
def test_prepare_train_evaluate_predict_suggest_through_the_cli(fake_reddit: FakeReddit, yotsuba_env: dict[str, str],
                                                               tmp_path: Path):
    """The whole path a user walks, on real faces served by the fake Reddit."""
    import random

    from PIL import Image

    from tests.scenes import ANIMEFACE, CASCADE, animeface_rows, compose_scene, load_face

    if not (ANIMEFACE / "labels.csv").exists() or not CASCADE.exists():
        pytest.skip("../shared/data/animeface-10 or ../shared/cascade is not present beside the checkout")
    rows = animeface_rows()
    labels = ["hatsune_miku", "hakurei_reimu", "shana"]
    for label in labels:
        for row in [r for r in rows if r["label"] == label][:30]:
            url = fake_reddit.add_image(f"/i/{row['path']}", (ANIMEFACE / row["path"]).read_bytes(),
                                        "image/png")
            fake_reddit.add_post(f"{label}_crops", f"{label} art", url=url)
    rng = random.Random(5)
    scene, _ = compose_scene([load_face(r) for r in rng.sample(rows, 3)], rng)
    picture = tmp_path / "group.png"
    Image.fromarray(scene).save(picture)
    # a group picture from a source whose faces are detected: its faces make the unlabelled pool
    fake_reddit.add_post("group_shots", "group shot", url=fake_reddit.add_image(
        "/i/group.png", picture.read_bytes(), "image/png"))
    job = tmp_path / "job.yaml"
    job.write_text("name: trio\noptions: {faces: crops_unchecked}\nlabels:\n" + "".join(
        f"  - name: {label}\n    sources: [{{kind: subreddit_posts, subreddit: {label}_crops}}"
        + (", {kind: subreddit_posts, subreddit: group_shots, faces: detect}" if label == labels[0] else "")
        + "]\n" for label in labels))
    env = {**yotsuba_env, "YOTSUBA_ALLOW_PRIVATE_HOSTS": "true", "YOTSUBA_CASCADE_PATH": str(CASCADE),
           "YOTSUBA_FACE_SIZE": "64", "YOTSUBA_TRAIN_EPOCHS": "2", "YOTSUBA_TRAIN_MIN_STEPS": "8",
           "YOTSUBA_TRAIN_MIN_PER_LABEL": "5",
           "YOTSUBA_TRAIN_BATCH_SIZE": "16"}
    for stage in ("scrape", "download"):
        assert run_cli(stage, str(job), env=env, cwd=tmp_path).returncode == 0

    prepared = run_cli("prepare", str(job), "--json", env=env, cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr
    summary = json.loads(prepared.stdout)
    assert summary["processed"] == 91 and summary["faces_found"] >= 91
    assert set(summary["per_label"]) == set(labels)
    table = run_cli("prepare", str(job), env=env, cwd=tmp_path)
    assert "0 new of 91 images" in table.stdout

    trained = run_cli("train", str(job), "--json", env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    quiet(trained)
    result = json.loads(trained.stdout)
    assert result["champion"] and result["registered_version"] == "1" and "test/acc" in result["metrics"]

    folder = tmp_path / "holdout"
    for label in labels:
        (folder / label).mkdir(parents=True)
        for row in [r for r in rows if r["label"] == label][30:34]:
            (folder / label / Path(row["path"]).name).write_bytes((ANIMEFACE / row["path"]).read_bytes())
    model = "models:/trio-classifier@champion"
    evaluated = run_cli("evaluate", str(folder), "--model", model, "--crops", "--json",
                        "--out-dir", str(tmp_path / "ev"), env=env, cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    quiet(evaluated)
    assert json.loads(evaluated.stdout)["images"] == 12
    assert (tmp_path / "ev" / "confusion_matrix.png").exists()

    predicted = run_cli("predict", str(picture), "--model", model, "--out-dir", str(tmp_path / "pred"),
                        env=env, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    quiet(predicted)
    faces = json.loads((tmp_path / "pred" / "predictions.json").read_text())[0]["faces"]
    assert faces and all(f["label"] in labels for f in faces)

    suggested = run_cli("suggest", str(job), "--json", env=env, cwd=tmp_path)
    assert suggested.returncode == 0, suggested.stderr
    rows = json.loads(suggested.stdout)
    assert len(rows) >= 2 and {row["found_for"] for row in rows} == {labels[0]}  # the group picture's faces
    assert all(row["suggested"] in labels and 0 < row["confidence"] <= 1 for row in rows)
