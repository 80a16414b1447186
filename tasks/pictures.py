"""Pictures of a dataset for people: per-label contact sheets, counts per label, largest duplicate clusters.

PNG files in the dataset directory; the training stage logs them to MLflow with the run.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

STATUS_COLOURS = {"labelled": "#2a9d8f", "unlabelled": "#8ab17d", "duplicate": "#e9c46a",
                  "grayscale": "#6c757d", "cross_label": "#e76f51"}


def contact_sheet(paths: list[Path], title: str, columns: int = 10, tile: int = 96) -> Image.Image:
    rows = max(1, math.ceil(len(paths) / columns))
    header = 28
    sheet = Image.new("RGB", (columns * tile, header + rows * tile), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 8), title, fill="black")
    for index, path in enumerate(paths):
        with Image.open(path) as face:
            thumb = face.convert("RGB").resize((tile, tile))
        sheet.paste(thumb, ((index % columns) * tile, header + (index // columns) * tile))
    return sheet


def counts_chart(per_label: dict[str, dict[str, int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    labels = sorted(per_label)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 4.5))
    bottom = [0] * len(labels)
    for status, colour in STATUS_COLOURS.items():
        values = [per_label[label].get(status, 0) for label in labels]
        ax.bar(labels, values, bottom=bottom, color=colour, label=status.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("faces")
    ax.set_title("faces per label")
    ax.legend(fontsize=8, title="kept: labelled, unlabelled; removed: the rest", title_fontsize=7)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dataset_pictures(data_dir: Path, out_dir: Path, faces: list[dict[str, Any]], conn: sqlite3.Connection,
                     job: str, summary: Any, per_sheet: int = 100, largest_clusters: int = 12) -> list[Path]:
    """Write the pictures and a JSON report; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    kept = conn.execute(
        """SELECT d.label, f.path FROM dataset d JOIN faces f ON f.id = d.face_id
           WHERE d.job = ? AND d.role = 'labelled' AND d.status = 'kept' ORDER BY d.label, f.id""", (job,))
    by_label: dict[str, list[Path]] = defaultdict(list)
    for label, path in kept:
        by_label[label].append(data_dir / path)
    for label, paths in sorted(by_label.items()):
        target = out_dir / f"sheet_{label}.png"
        title = f"{label}: {len(paths)} labelled faces" + (f" (first {per_sheet})" if len(paths) > per_sheet else "")
        contact_sheet(paths[:per_sheet], title).save(target)
        written.append(target)

    target = out_dir / "counts.png"
    counts_chart({label: dict(c) for label, c in summary.per_label.items()}, target)
    written.append(target)

    clusters: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for face in faces:
        if "cluster" in face:
            clusters[face["cluster"]].append(face)
    biggest = sorted((c for c in clusters.values() if len(c) > 1), key=len, reverse=True)[:largest_clusters]
    if biggest:
        target = out_dir / "duplicates.png"
        width = max(len(c) for c in biggest)
        rows = [c[:width] + [None] * (width - len(c)) for c in biggest]
        tile = 80
        sheet = Image.new("RGB", (width * tile, 28 + len(rows) * tile), "white")
        ImageDraw.Draw(sheet).text((6, 8), f"largest near-duplicate clusters ({len(biggest)} shown)", fill="black")
        for r, row in enumerate(rows):
            for c, face in enumerate(row):
                if face is not None:
                    with Image.open(data_dir / face["path"]) as image:
                        sheet.paste(image.convert("RGB").resize((tile, tile)), (c * tile, 28 + r * tile))
        sheet.save(target)
        written.append(target)

    report = out_dir / "report.json"
    report.write_text(json.dumps(summary.to_dict() | {"pictures": [p.name for p in written]}, indent=2))
    written.append(report)
    return written
