"""The review app over a job prepared by the real CLI from real faces: the suspects ranking finds planted label
errors, and the app is safe (ids not paths, a token on every change, clear errors for stale pages)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fakes.reddit import FakeReddit
from review.app import create_app
from tasks import catalog
from tasks.corrections import face_states, history
from tasks.jobs import load_job
from tests.reviewing import HAVE_FACES, NO_FACES, plant_job, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.skipif(not HAVE_FACES, reason=NO_FACES)]
LABELS = ["hatsune_miku", "hakurei_reimu", "shana", "izumi_konata", "akiyama_mio", "fate_testarossa"]
PLANTED_PER_LABEL = 2


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    """Six labels of 25 real faces each, plus 2 faces of the next label planted in each: 12 label errors."""
    workdir = tmp_path_factory.mktemp("review")
    with FakeReddit() as fake:
        job = plant_job(fake, workdir, LABELS, per_label=25, planted_per_label=PLANTED_PER_LABEL)
        nightly = json.loads(run_cli(job, "run", str(job.job_file), "--no-train", "--json").stdout)
    job.env["prepare_digest"] = nightly["prepare"]["dataset_digest"]
    return job


def client_for(job, token: str | None = None) -> TestClient:
    app = create_app(Path(job.env["YOTSUBA_DATA_DIR"]), load_job(job.job_file), "tester", token=token)
    return TestClient(app, base_url="http://127.0.0.1:8765")


def faces_by_sha(job) -> dict[str, int]:
    conn = catalog.connect(Path(job.env["YOTSUBA_DATA_DIR"]) / "catalog.sqlite")
    try:
        return {row[1]: row[0] for row in conn.execute("SELECT id, sha256 FROM faces")}
    finally:
        conn.close()


def states(job):
    conn = catalog.connect(Path(job.env["YOTSUBA_DATA_DIR"]) / "catalog.sqlite")
    try:
        return face_states(conn, "review")
    finally:
        conn.close()


def test_suspects_rank_planted_label_errors_above_clean_faces(prepared):
    page = client_for(prepared).get("/jobs/review/suspects?limit=1000")
    assert page.status_code == 200
    ranked = [int(face) for face in re.findall(r'data-face="(\d+)"', page.text)]
    training = {face_id for face_id, s in states(prepared).items() if s.in_training}
    assert sorted(ranked) == sorted(training)  # every face in training is ranked, once
    ids = faces_by_sha(prepared)
    planted = {ids[sha] for sha in prepared.planted} & training  # a planted near-duplicate may be cross-label
    assert len(planted) >= 10
    precision = len(set(ranked[:len(planted)]) & planted) / len(planted)
    print(f"precision at {len(planted)} planted of {len(ranked)} ranked: {precision:.2f}")
    # measured 0.58 (7 of 12) on every run (folds follow the paths); bench/suspects.py: 0.57 over 10 random draws
    # of 6 labels; a ranking by chance: 0.08
    assert precision >= 0.5
    # each suspect shows its predicted label beside the given one
    assert re.search(r"given \w+ \d+%, predicted <span class=\"pred\">\w+</span>", page.text)


def test_files_are_served_by_id_never_by_path(prepared):
    client = client_for(prepared)
    face_id, state = next(iter(states(prepared).items()))
    data_dir = Path(prepared.env["YOTSUBA_DATA_DIR"])
    assert client.get(f"/faces/{face_id}.png").content == (data_dir / state.path).read_bytes()
    image = client.get(f"/images/{state.sha256}")
    assert image.status_code == 200 and hashlib.sha256(image.content).hexdigest() == state.sha256
    for attempt in ("/faces/..%2Fcatalog.sqlite", "/faces/..%2F..%2F..%2Fetc%2Fpasswd.png", "/faces/-1.png",
                    "/images/..%2Fcatalog.sqlite", "/images/" + "0" * 64, "/images/%2Fetc%2Fpasswd",
                    "/faces/1%2F..%2F..%2Fcatalog.sqlite.png"):
        response = client.get(attempt)
        assert response.status_code == 404, attempt
        assert b"SQLite format" not in response.content and b"root:" not in response.content
    # a catalog row that points outside the data directory (a tampered catalog) is refused too
    conn = catalog.connect(data_dir / "catalog.sqlite")
    try:
        cursor = conn.execute("INSERT INTO faces (sha256, params, mode, idx, x, y, w, h, path) "
                              "VALUES ('x', 'tampered', 'detect', 0, 0, 0, 1, 1, '../../../../etc/passwd')")
        tampered = cursor.lastrowid
    finally:
        conn.close()
    response = client.get(f"/faces/{tampered}.png")
    assert response.status_code == 404 and "missing from the data directory" in response.text


def test_changes_need_the_pages_token(prepared):
    client = client_for(prepared)
    face_id = next(f for f, s in states(prepared).items() if s.in_training)
    form = {"face_id": str(face_id), "action": "exclude"}
    missing = client.post("/jobs/review/corrections", data=form, headers={"Accept": "application/json"})
    assert missing.status_code == 403 and "no review token" in missing.json()["message"]
    wrong = client.post("/jobs/review/corrections", data={**form, "token": "guessed"})
    assert wrong.status_code == 403 and "reload" in wrong.text
    foreign = client.post("/jobs/review/corrections", data={**form, "token": client.app.state.token},
                          headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert states(prepared)[face_id].in_training  # nothing was recorded
    conn = catalog.connect(Path(prepared.env["YOTSUBA_DATA_DIR"]) / "catalog.sqlite")
    try:
        assert history(conn, "review") == []
    finally:
        conn.close()


def _form_of(page: str, face_id: int, action: str) -> dict[str, str]:
    """The fields of a face's action form as the page rendered them."""
    card = page[page.index(f'id="face-{face_id}"'):]
    at = card.index(f'name="action" value="{action}"')
    form = card[card.rindex("<form", 0, at):card.index("</form>", at)]
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))


def test_a_page_left_open_across_a_rerun(prepared):
    """Face ids and the token outlive a rerun of prepare: the open page still works. A face changed meanwhile
    (another tab) answers 409 with what changed; a page from an earlier review server, 403."""
    client = client_for(prepared)
    faces = [f for f, s in states(prepared).items() if s.in_training and s.label == "shana"][:2]
    page = client.get("/jobs/review/labels/shana").text
    run_cli(prepared, "prepare", str(prepared.job_file))  # the nightly's prepare, while the page is open

    ok = client.post("/jobs/review/corrections", data=_form_of(page, faces[0], "exclude"),
                     headers={"Accept": "application/json"})
    assert ok.status_code == 200, ok.text
    assert not states(prepared)[faces[0]].in_training

    other_tab = client.get("/jobs/review/labels/shana").text
    client.post("/jobs/review/corrections", data={**_form_of(other_tab, faces[1], "relabel"), "value": "akiyama_mio"})
    stale = client.post("/jobs/review/corrections", data=_form_of(page, faces[1], "exclude"),
                        headers={"Accept": "application/json"})
    assert stale.status_code == 409
    assert "changed since this page was loaded" in stale.json()["message"] and "reload" in stale.json()["message"]
    assert states(prepared)[faces[1]].label == "akiyama_mio" and states(prepared)[faces[1]].in_training

    restarted = client_for(prepared)  # `yotsuba review` again: a new token
    old = restarted.post("/jobs/review/corrections", data=_form_of(page, faces[1], "exclude"))
    assert old.status_code == 403 and "earlier" in old.text

    missing = client.post("/jobs/review/corrections", data={**_form_of(page, faces[1], "exclude"), "face_id": "999999"})
    assert missing.status_code == 404 and "face 999999 is not in the dataset" in missing.text
    bad = client.get("/jobs/another/suspects")
    assert bad.status_code == 404 and "serves job review" in bad.text

    conn = catalog.connect(Path(prepared.env["YOTSUBA_DATA_DIR"]) / "catalog.sqlite")
    try:  # take both back (undo from the corrections page's forms): the other tests see prepare's dataset
        for row in history(conn, "review"):
            if row["action"] != "undo" and not row["undone"]:
                response = client.post(f"/jobs/review/corrections/{row['id']}/undo",
                                       data={"token": client.app.state.token}, follow_redirects=False)
                assert response.status_code == 303 and response.headers["location"] == "/jobs/review/corrections"
        from tasks.dataset import dataset_view

        assert dataset_view(conn, load_job(prepared.job_file)).digest == prepared.env["prepare_digest"]
    finally:
        conn.close()
