"""Corrections from the review page, and the dataset view they apply to.

A correction is an append-only catalog row: who, when, which face, what (relabel, exclude, include, accept
or reject a suggestion, keeper of a near-duplicate cluster). An undo is one more row naming the correction
it takes back. Nothing is moved or deleted: `prepare` rebuilds the `dataset` rows from detections and
never touches these, so a rerun (or a nightly scrape) keeps every correction, and the view below applies
them again. The training set and its digest come from here, so a correction changes the dataset version
MLflow records.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from tasks import catalog

ACTIONS = ("relabel", "exclude", "include", "accept_suggestion", "reject_suggestion", "keeper")
NEEDS_LABEL = ("relabel", "accept_suggestion")


class CorrectionError(ValueError):
    """A correction that cannot be recorded; `status` is the HTTP status the review page answers with."""

    status = 400


class UnknownFace(CorrectionError):
    status = 404


class StaleCorrection(CorrectionError):
    """The page acted on a state that is no longer the face's (another tab, a rerun of prepare)."""

    status = 409


@dataclass
class FaceState:
    """One face of the job's dataset as the review and training see it: prepare's verdict plus corrections."""

    face_id: int
    path: str  # relative to the data directory
    sha256: str  # the source image
    found_for: tuple[str, ...]  # the labels its image was found for
    role: str  # labelled | unlabelled (an accepted or relabelled unlabelled face becomes labelled)
    status: str  # kept | duplicate | grayscale | cross_label (a keeper moves kept/duplicate in its cluster)
    cluster: int | None
    label: str | None  # the label it trains under; None when its image was found for several
    decision: str | None = None  # exclude | include (the latest of the two), None: prepare's verdict stands
    reviewed: bool = False  # a person gave it its label
    suggestion_rejected: bool = False
    keeper: bool = False
    corrections: list[int] = field(default_factory=list)  # ids of the corrections in effect

    @property
    def in_training(self) -> bool:
        if self.decision == "exclude" or self.label is None or self.role != "labelled":
            return False
        if self.decision == "include":
            return True
        return self.status == "kept" or (self.status == "cross_label" and self.reviewed)

    def version(self) -> str:
        """What a page showed of this face; a correction sent with another version is stale."""
        return f"{self.label or '-'}/{self.role}/{self.status}/{self.decision or '-'}/{int(self.suggestion_rejected)}"


def base_states(conn: sqlite3.Connection, job: str) -> dict[int, FaceState]:
    """prepare's dataset rows of the job, one state per face."""
    states: dict[int, FaceState] = {}
    for row in conn.execute(
        """SELECT d.face_id, f.path, f.sha256, d.label, d.role, d.status, d.cluster
           FROM dataset d JOIN faces f ON f.id = d.face_id WHERE d.job = ? ORDER BY d.face_id, d.label""", (job,)):
        state = states.get(row["face_id"])
        if state is None:
            states[row["face_id"]] = FaceState(row["face_id"], row["path"], row["sha256"], (row["label"],),
                                               row["role"], row["status"], row["cluster"], row["label"])
        else:
            state.found_for = (*state.found_for, row["label"])
            state.label = None  # found for two labels: no single given label until a person gives one
    return states


def in_effect(conn: sqlite3.Connection, job: str) -> list[sqlite3.Row]:
    """The job's corrections that are not undone, oldest first (later ones win)."""
    return conn.execute(
        """SELECT * FROM corrections c WHERE c.job = ? AND c.action != 'undo'
           AND NOT EXISTS (SELECT 1 FROM corrections u WHERE u.undoes = c.id) ORDER BY c.id""", (job,)).fetchall()


def apply_corrections(states: dict[int, FaceState], corrections: list[Any]) -> dict[int, FaceState]:
    """The states after the corrections (rows with id, face_id, action, value), oldest first. Pure: the
    given states are not changed. A correction of a face no longer in the dataset has no effect."""
    result = {face_id: replace(state, corrections=[]) for face_id, state in states.items()}
    keepers: dict[int, int] = {}
    for correction in corrections:
        state = result.get(correction["face_id"])
        if state is None:
            continue
        action = correction["action"]
        state.corrections.append(correction["id"])
        if action in NEEDS_LABEL:
            state.label, state.role, state.reviewed = correction["value"], "labelled", True
        elif action in ("exclude", "include"):
            state.decision = action
        elif action == "reject_suggestion":
            state.suggestion_rejected = True
        elif action == "keeper" and state.cluster is not None:
            keepers[state.cluster] = state.face_id
    members: dict[int, list[FaceState]] = defaultdict(list)
    for state in result.values():
        if state.cluster is not None:
            members[state.cluster].append(state)
    for cluster, keeper in keepers.items():
        for state in members[cluster]:
            if state.face_id == keeper:
                state.keeper = True
                if state.status == "duplicate":
                    state.status = "kept"
            elif state.status == "kept":
                state.status = "duplicate"
    return result


def face_states(conn: sqlite3.Connection, job: str) -> dict[int, FaceState]:
    """The job's dataset view: prepare's rows with every correction in effect applied."""
    return apply_corrections(base_states(conn, job), in_effect(conn, job))


# ---------------------------------------------------------------- writing


def record(conn: sqlite3.Connection, job: str, face_id: int, action: str, who: str, labels: list[str],
           value: str | None = None, expect: str | None = None) -> int:
    """Append one correction; `expect` is the face's version as the page showed it. Returns its id."""
    if action not in ACTIONS:
        raise CorrectionError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if action in NEEDS_LABEL and value not in labels:
        raise CorrectionError(f"{value!r} is not a label of job {job} ({', '.join(labels)})")
    with catalog.transaction(conn):  # the check and the row under one write lock: two tabs cannot both pass
        state = face_states(conn, job).get(face_id)
        if state is None:
            raise UnknownFace(f"face {face_id} is not in the dataset of job {job}")
        if expect is not None and expect != state.version():
            raise StaleCorrection(f"face {face_id} changed since this page was loaded (it showed {expect}, it is "
                                  f"now {state.version()}): reload the page")
        if action == "include" and (state.label is None or state.role != "labelled"):
            raise StaleCorrection(f"face {face_id} has no label to be included under: relabel it instead")
        if action == "keeper" and state.cluster is None:
            raise StaleCorrection(f"face {face_id} is in no near-duplicate cluster")
        cursor = conn.execute(
            "INSERT INTO corrections (job, face_id, action, value, who, at) VALUES (?, ?, ?, ?, ?, ?)",
            (job, face_id, action, value if action in NEEDS_LABEL else None, who, time.time()))
        return int(cursor.lastrowid)


def undo(conn: sqlite3.Connection, job: str, correction_id: int, who: str) -> int:
    """Take a correction back (one more row). Returns the undo's id."""
    with catalog.transaction(conn):
        row = conn.execute("SELECT * FROM corrections WHERE id = ? AND job = ?", (correction_id, job)).fetchone()
        if row is None:
            raise UnknownFace(f"no correction {correction_id} in job {job}")
        if row["action"] == "undo":
            raise CorrectionError(f"correction {correction_id} is an undo: correct the face again instead")
        if conn.execute("SELECT 1 FROM corrections WHERE undoes = ?", (correction_id,)).fetchone():
            raise StaleCorrection(f"correction {correction_id} was already undone: reload the page")
        cursor = conn.execute(
            "INSERT INTO corrections (job, face_id, action, undoes, who, at) VALUES (?, ?, 'undo', ?, ?, ?)",
            (job, row["face_id"], correction_id, who, time.time()))
        return int(cursor.lastrowid)


def last_id(conn: sqlite3.Connection, job: str) -> int:
    """The newest correction (or undo) of the job, 0 for none: a training run that records it saw all before it."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM corrections WHERE job = ?", (job,)).fetchone()[0])


def history(conn: sqlite3.Connection, job: str) -> list[dict[str, Any]]:
    """Every correction of the job, newest first, with whether it is undone."""
    undone = {row[0] for row in conn.execute(
        "SELECT undoes FROM corrections WHERE job = ? AND undoes IS NOT NULL", (job,))}
    return [{**dict(row), "undone": row["id"] in undone}
            for row in conn.execute("SELECT * FROM corrections WHERE job = ? ORDER BY id DESC", (job,))]
