"""The labelled dataset of a job: the catalog's kept labelled faces, with the review page's corrections
applied and relabelled by the job file as it is now. One view for every stage: prepare's summary states its
digest, training reads its faces, and the nightly rule decides on it."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tasks.corrections import face_states, in_effect, last_id
from tasks.jobs import Job, normalise_name


@dataclass(frozen=True)
class FaceRecord:
    path: str  # relative to the data directory
    label: str
    image_sha256: str  # the source image: what the split is keyed on



@dataclass
class DatasetView:
    """The labelled faces to train on, under the job file's *current* labels."""

    records: list[FaceRecord]
    digest: str  # sha256 of the sorted (path, label) lines: the dataset version MLflow records
    per_label: dict[str, int]  # every label of the job, in the job's order, with its faces (0 included)
    renamed: dict[str, str] = field(default_factory=dict)  # catalog label -> the job label naming it as an alias
    not_in_job: dict[str, int] = field(default_factory=dict)  # faces of labels the job no longer has: left out
    cross_label: int = 0  # faces excluded: two of the job's labels claim them
    recovered: int = 0  # faces prepare excluded as cross-label that the current labels give to one label
    corrections: int = 0  # the review page's corrections in effect
    last_correction: int = 0  # the newest correction's id: which corrections a training run saw

    def notes(self) -> list[str]:
        """What the job file's labels did to the catalog's faces, one line each."""
        lines = [f"label renamed: {old} -> {new} (its faces train as {new})" for old, new in self.renamed.items()]
        if self.not_in_job:
            lines.append("not trained, labels no longer in the job: "
                         + ", ".join(f"{label} ({n} faces)" for label, n in self.not_in_job.items()))
        if self.recovered:
            lines.append(f"{self.recovered} faces excluded as cross-label by prepare belong to one label now")
        return lines


def dataset_digest_of(records: list[FaceRecord]) -> str:
    """A hash of the face files and labels: the dataset version (the same as before corrections existed)."""
    digest = hashlib.sha256()
    for path, label in sorted((r.path, r.label) for r in records):
        digest.update(f"{path}\t{label}\n".encode())
    return digest.hexdigest()


def label_renames(job: Job, catalog_labels: set[str]) -> dict[str, str]:
    """Catalog labels the job no longer names but one of its labels lists as an alias: a rename. Keeping the
    old name among the aliases is how a person says "miku is now nakano_miku" (titles naming it still match)."""
    current = {label.name for label in job.labels}
    by_alias = {normalise_name(alias): label.name for label in job.labels for alias in label.aliases}
    return {old: by_alias[normalise_name(old)] for old in sorted(catalog_labels - current)
            if normalise_name(old) in by_alias}


def dataset_view(conn: sqlite3.Connection, job: Job) -> DatasetView:
    """The job's kept labelled faces from the catalog, with the review page's corrections applied
    (tasks.corrections) and relabelled by the job file as it is now.

    The rows carry the labels the images were *found for*, in any version of the job. Here a label the job
    no longer has is dropped (its faces are counted, not trained), a renamed one (the old name kept as an
    alias) becomes its new name, and a near-duplicate cluster that prepare excluded as cross-label is kept
    when only one of the job's current labels claims it (a rename or removal made the conflict go away):
    its best member by source-image area, as prepare would have chosen. A face a person labelled on the
    review page trains under that label (renames applied), whatever its cluster says."""
    areas = dict(conn.execute("SELECT sha256, width * height FROM images").fetchall())
    faces: dict[int, _Face] = {}
    reviewed: list[FaceRecord] = []
    current = [label.name for label in job.labels]
    states = face_states(conn, job.name)
    renamed = label_renames(job, {label for state in states.values() for label in state.found_for}
                            | {state.label for state in states.values() if state.reviewed and state.label})
    not_in_job: Counter[str] = Counter()
    for state in states.values():
        if state.role != "labelled" or state.decision == "exclude":
            continue
        if state.reviewed:  # a person's label: no cluster or found-for rule overrides it
            if state.in_training:
                label = renamed.get(state.label, state.label)
                if label in current:
                    reviewed.append(FaceRecord(state.path, label, state.sha256))
                else:
                    not_in_job[state.label] += 1
            continue
        status = "kept" if state.decision == "include" else state.status
        if status == "grayscale":
            continue
        face = faces.setdefault(state.face_id, _Face(state.face_id, status, state.path, state.sha256,
                                                     areas.get(state.sha256) or 0, state.cluster or state.face_id))
        face.labels.update(state.found_for)
    clusters: dict[int, list[_Face]] = defaultdict(list)
    for face in faces.values():
        face.mapped = {renamed.get(label, label) for label in face.labels} & set(current)
        clusters[face.cluster].append(face)

    records: list[FaceRecord] = list(reviewed)
    cross_label = recovered = 0
    for members in clusters.values():
        kept = [f for f in members if f.status == "kept"]
        if not kept and not any(f.status == "cross_label" for f in members):
            continue
        claimed = set().union(*(f.mapped for f in members))
        if not claimed:
            not_in_job.update((kept or members)[0].labels)
            continue
        if len(claimed) > 1:
            cross_label += len(members)
            continue
        best = kept[0] if kept else min(members, key=lambda f: (-f.area, f.id))
        recovered += not kept
        records.append(FaceRecord(best.path, claimed.pop(), best.sha256))
    counts = Counter(r.label for r in records)
    return DatasetView(sorted(records, key=lambda r: (r.label, r.path)), dataset_digest_of(records),
                       {label: counts.get(label, 0) for label in current}, renamed, dict(sorted(not_in_job.items())),
                       cross_label, recovered, len(in_effect(conn, job.name)), last_id(conn, job.name))


@dataclass
class _Face:
    id: int
    status: str
    path: str
    sha256: str
    area: int
    cluster: int
    labels: set[str] = field(default_factory=set)  # as found, in whatever version of the job
    mapped: set[str] = field(default_factory=set)  # the job's current labels among them (renames applied)
