"""The dataset view with the review's corrections, on a real catalog with hand-written prepare rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tasks import catalog
from tasks.corrections import (
    CorrectionError,
    StaleCorrection,
    UnknownFace,
    face_states,
    history,
    in_effect,
    record,
    undo,
)
from tasks.dataset import dataset_view
from tasks.jobs import Job

LABELS = ["miku", "nino", "ichika"]
JOB = Job.model_validate({"name": "j", "labels": [
    {"name": name, "sources": [{"kind": "subreddit_posts", "subreddit": f"{name}_sub"}]} for name in LABELS]})
# face id -> (found for, role, status, cluster)
ROWS = {
    1: (["miku"], "labelled", "kept", 1),
    2: (["miku"], "labelled", "duplicate", 1),
    3: (["miku"], "labelled", "kept", 3),
    4: (["nino"], "labelled", "kept", 4),
    5: (["nino"], "labelled", "grayscale", None),
    6: (["miku", "nino"], "labelled", "cross_label", 6),
    7: (["ichika"], "unlabelled", "kept", 7),
}


@pytest.fixture
def conn(tmp_path: Path):
    connection = catalog.connect(tmp_path / "catalog.sqlite")
    for face_id, (labels, role, status, cluster) in ROWS.items():
        sha = hashlib.sha256(str(face_id).encode()).hexdigest()
        connection.execute("INSERT INTO faces (id, sha256, params, mode, idx, x, y, w, h, path) "
                           "VALUES (?, ?, 'p', 'detect', 0, 0, 0, 8, 8, ?)", (face_id, sha, f"faces/{face_id}.png"))
        for label in labels:
            connection.execute("INSERT INTO dataset (job, face_id, label, role, status, cluster) VALUES "
                               "('j', ?, ?, ?, ?, ?)", (face_id, label, role, status, cluster))
    yield connection
    connection.close()


def training(conn) -> dict[str, str]:
    return {record.path: record.label for record in dataset_view(conn, JOB).records}


def test_without_corrections_the_view_is_prepares_kept_labelled_faces_and_the_old_digest(conn):
    assert training(conn) == {"faces/1.png": "miku", "faces/3.png": "miku", "faces/4.png": "nino"}
    # the digest as prepare computed it before corrections existed: sorted "path\tlabel" lines
    old = hashlib.sha256(b"faces/1.png\tmiku\nfaces/3.png\tmiku\nfaces/4.png\tnino\n").hexdigest()
    assert dataset_view(conn, JOB).digest == old


def test_each_action_changes_the_training_set_and_the_digest(conn):
    before = dataset_view(conn, JOB).digest
    record(conn, "j", 3, "relabel", "me", LABELS, value="ichika")
    record(conn, "j", 4, "exclude", "me", LABELS)
    record(conn, "j", 7, "accept_suggestion", "me", LABELS, value="ichika")
    record(conn, "j", 5, "include", "me", LABELS)
    record(conn, "j", 6, "relabel", "me", LABELS, value="nino")  # a person settles a cross-label conflict
    record(conn, "j", 2, "keeper", "me", LABELS)
    assert training(conn) == {"faces/2.png": "miku", "faces/3.png": "ichika", "faces/5.png": "nino",
                              "faces/6.png": "nino", "faces/7.png": "ichika"}
    assert dataset_view(conn, JOB).digest != before
    assert len(in_effect(conn, "j")) == 6


def test_undo_restores_the_view_exactly_and_keeps_both_rows(conn):
    before = dataset_view(conn, JOB).digest
    cid = record(conn, "j", 1, "relabel", "me", LABELS, value="nino")
    assert training(conn)["faces/1.png"] == "nino"
    undo(conn, "j", cid, "me")
    assert dataset_view(conn, JOB).digest == before and in_effect(conn, "j") == []
    rows = history(conn, "j")
    assert [(r["action"], r["undone"]) for r in rows] == [("undo", False), ("relabel", True)]
    with pytest.raises(StaleCorrection, match="already undone"):
        undo(conn, "j", cid, "me")
    with pytest.raises(CorrectionError, match="is an undo"):
        undo(conn, "j", rows[0]["id"], "me")


def test_bad_corrections_are_refused_with_the_reason(conn):
    with pytest.raises(UnknownFace, match="face 99 is not in the dataset"):
        record(conn, "j", 99, "exclude", "me", LABELS)
    with pytest.raises(CorrectionError, match="'rem' is not a label"):
        record(conn, "j", 1, "relabel", "me", LABELS, value="rem")
    with pytest.raises(CorrectionError, match="unknown action"):
        record(conn, "j", 1, "delete", "me", LABELS)
    with pytest.raises(StaleCorrection, match="no label to be included"):
        record(conn, "j", 7, "include", "me", LABELS)
    assert history(conn, "j") == []


def test_a_page_acting_on_a_changed_face_gets_a_stale_error(conn):
    shown = face_states(conn, "j")[1].version()
    record(conn, "j", 1, "relabel", "other tab", LABELS, value="nino", expect=shown)
    with pytest.raises(StaleCorrection, match="changed since this page was loaded"):
        record(conn, "j", 1, "exclude", "me", LABELS, expect=shown)
    assert training(conn)["faces/1.png"] == "nino"


def test_corrections_survive_prepare_rebuilding_the_dataset_rows(conn):
    record(conn, "j", 4, "exclude", "me", LABELS)
    rows = conn.execute("SELECT * FROM dataset").fetchall()
    conn.execute("DELETE FROM dataset WHERE job = 'j'")  # what prepare's clean_job does before inserting again
    conn.executemany("INSERT INTO dataset VALUES (?, ?, ?, ?, ?, ?)", [tuple(r) for r in rows])
    assert "faces/4.png" not in training(conn)


def test_a_rejected_suggestion_is_remembered_and_changes_no_training_face(conn):
    before = dataset_view(conn, JOB).digest
    record(conn, "j", 7, "reject_suggestion", "me", LABELS)
    assert face_states(conn, "j")[7].suggestion_rejected and face_states(conn, "j")[7].role == "unlabelled"
    assert dataset_view(conn, JOB).digest == before
