"""The suspects ranking on drawn characters (hair and eye colours tell the labels apart)."""

from __future__ import annotations

from pathlib import Path

from fakes.demo import synthetic_character
from models.suspects import find_suspects


def write_faces(tmp_path: Path, plan: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """(drawn label index, given label) -> (face id, path, given label)."""
    faces = []
    for face_id, (drawn, given) in enumerate(plan, start=1):
        path = f"faces/{face_id}.png"
        (tmp_path / "faces").mkdir(exist_ok=True)
        (tmp_path / path).write_bytes(synthetic_character(drawn, face_id, size=64))
        faces.append((face_id, path, given))
    return faces


def test_swapped_faces_rank_first_and_single_face_labels_are_counted_out(tmp_path: Path):
    names = ["miku", "nino", "ichika"]
    plan = [(i, names[i]) for i in range(3) for _ in range(12)]
    plan += [(0, "nino"), (1, "ichika")]  # a miku posted as nino, a nino as ichika
    plan += [(2, "yotsuba")]  # a label with one face: no fold could learn it
    faces = write_faces(tmp_path, plan)
    cache: dict = {}
    report = find_suspects(tmp_path, faces, feature_cache=cache)
    assert report.skipped == {"label_with_one_face": 1}
    assert len(report.ranked) == 38 and report.folds == 5
    top = report.ranked[:2]
    assert {s.face_id for s in top} == {37, 38}
    assert {(s.given, s.predicted) for s in top} == {("nino", "miku"), ("ichika", "nino")}
    assert all(s.issue for s in top) and sum(s.issue for s in report.ranked) <= 4
    assert len(cache) == 38  # features kept for the next ranking
    assert [s.face_id for s in find_suspects(tmp_path, faces, feature_cache=cache).ranked] == \
        [s.face_id for s in report.ranked]
