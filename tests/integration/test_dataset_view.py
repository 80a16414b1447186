"""The dataset training reads follows the job file as it is now (renamed and removed labels), and the nightly
rule decides on it. The catalog rows are written as the prepare step writes them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows.settings import Settings
from flows.train import decide_training, read_dataset
from tasks import catalog
from tasks.jobs import Job

pytestmark = pytest.mark.integration


class Catalog:
    """Faces and `dataset` rows in a real catalog, as `prepare` leaves them."""

    def __init__(self, path: Path, job: str):
        self.conn = catalog.connect(path)
        self.job = job
        self.serial = 0

    def face(self, labels: list[str], status: str = "kept", cluster: int | None = None, area: int = 100) -> int:
        self.serial += 1
        sha = f"{self.serial:064x}"
        self.conn.execute("INSERT INTO images VALUES (?, 'png', 1, ?, 100, 'PNG', 'http://x', ?)",
                          (sha, area, time.time()))
        face_id = self.conn.execute(
            """INSERT INTO faces (sha256, params, mode, idx, x, y, w, h, path)
               VALUES (?, 'p', 'detect', 0, 0, 0, 9, 9, ?)""",
            (sha, f"faces/{self.serial:04d}.png")).lastrowid
        for label in labels:
            self.conn.execute("INSERT INTO dataset VALUES (?, ?, ?, 'labelled', ?, ?)",
                              (self.job, face_id, label, status, cluster or face_id))
        return face_id


def job(labels: list[dict]) -> Job:
    return Job.model_validate({"name": "quints", "labels": [
        {**label, "sources": [{"kind": "subreddit_posts", "subreddit": f"{label['name']}_sub"}]} for label in labels]})


def test_renamed_and_removed_labels_follow_the_job_file(tmp_path: Path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    cat = Catalog(settings.catalog_path, "quints")
    for _ in range(3):
        cat.face(["miku"])
    nino = [cat.face(["nino"]) for _ in range(2)]
    cat.face(["ichika"])
    # after the rename and a rescrape, the same picture was found for the old and the new name: prepare
    # saw two labels and excluded it as cross-label
    both = cat.face(["miku", "miku_nakano"], status="cross_label")
    # a near-duplicate pair found for the old name and for ichika: a real conflict, whatever the job says
    conflict = cat.face(["miku"], status="cross_label")
    cat.face(["ichika"], status="cross_label", cluster=conflict)
    # a near-duplicate pair prepare excluded because one member was found for nino, now removed: the larger
    # picture is kept, as prepare would have chosen
    small = cat.face(["ichika"], status="cross_label", area=50)
    cat.face(["nino"], status="cross_label", cluster=small, area=400)

    before = read_dataset(settings, job([{"name": "miku"}, {"name": "nino"}, {"name": "ichika"}]))
    assert before.per_label == {"miku": 4, "nino": 2, "ichika": 1} and before.cross_label == 4

    renamed = job([{"name": "miku_nakano", "aliases": ["Miku"]}, {"name": "ichika"}])  # nino removed
    view = read_dataset(settings, renamed)
    assert view.renamed == {"miku": "miku_nakano"}
    assert view.per_label == {"miku_nakano": 4, "ichika": 2}  # 3 renamed + the picture found under both names
    assert {r.path for r in view.records if r.label == "miku_nakano"} >= {f"faces/{both:04d}.png"}
    assert not {f"faces/{i:04d}.png" for i in nino} & {r.path for r in view.records}  # removed: not trained
    assert f"faces/{small + 1:04d}.png" in {r.path for r in view.records if r.label == "ichika"}
    assert view.not_in_job == {"nino": 2} and view.cross_label == 2 and view.recovered == 2
    notes = view.notes()
    assert "label renamed: miku -> miku_nakano (its faces train as miku_nakano)" in notes
    assert "not trained, labels no longer in the job: nino (2 faces)" in notes

    # without the old name as an alias, a rename is a new label: the old faces are named, not trained
    fresh = read_dataset(settings, job([{"name": "miku_nakano"}, {"name": "ichika"}]))
    assert fresh.per_label == {"miku_nakano": 1, "ichika": 3} and fresh.not_in_job == {"miku": 3, "nino": 2}
    assert fresh.digest != view.digest != before.digest


def finished_run(settings: Settings, tags: dict[str, str]) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri())
    experiment = client.get_experiment_by_name("quints")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("quints")
    run = client.create_run(experiment_id, tags=tags)  # the tags models.training.train sets
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_the_nightly_rule_trains_only_on_enough_new_faces(tmp_path: Path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", train_min_new_faces=20, train_min_per_label=10)
    quints = job([{"name": "miku"}, {"name": "nino"}, {"name": "ichika"}])
    cat = Catalog(settings.catalog_path, "quints")
    for label, count in (("miku", 30), ("nino", 25), ("ichika", 4)):
        for _ in range(count):
            cat.face([label])

    first = decide_training(settings, quints)
    assert first.train and first.new_faces == 59
    assert "left out, too few faces: ichika 4" in first.reason  # a short label does not stop the others

    run_id = finished_run(settings, {"labelled_faces": "59", "dataset_digest": read_dataset(settings, quints).digest})
    unchanged = decide_training(settings, quints)
    assert not unchanged.train and "unchanged since run" in unchanged.reason

    for _ in range(7):
        cat.face(["nino"])
    few = decide_training(settings, quints)
    assert not few.train and few.new_faces == 7 and few.last_run_id == run_id
    assert few.reason == (f"7 new labelled faces since run {run_id} (59 -> 66); training needs 20 "
                          "(YOTSUBA_TRAIN_MIN_NEW_FACES)")

    for _ in range(13):
        cat.face(["ichika"])
    enough = decide_training(settings, quints)
    assert enough.train and enough.new_faces == 20 and "left out" not in enough.reason


def test_the_nightly_rule_waits_while_fewer_than_two_labels_have_enough(tmp_path: Path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", train_min_per_label=10)
    cat = Catalog(settings.catalog_path, "quints")
    for _ in range(40):
        cat.face(["miku"])
    decision = decide_training(settings, job([{"name": "miku"}, {"name": "nino"}]))
    assert not decision.train and "nino 0" in decision.reason and "two such labels" in decision.reason
