"""The train/val/test split of a small label."""

from __future__ import annotations

from models.data import FaceRecord, SplitConfig, assign_splits, split_of


def records_all_in_train(label: str, count: int, config: SplitConfig) -> list[FaceRecord]:
    """`count` faces whose source images all hash into train: the unlucky small label."""
    records, serial = [], 0
    while len(records) < count:
        sha = f"{label}-{serial:06d}"
        serial += 1
        if split_of(sha, config) == "train":
            records.append(FaceRecord(f"{sha}.png", label, sha))
    return records


def test_a_label_the_hash_left_out_of_val_and_test_lends_one_image_to_each():
    config = SplitConfig(min_per_label=10)
    unlucky = records_all_in_train("rare", 12, config)
    others = [FaceRecord(f"c-{i}.png", "common", f"c-{i}") for i in range(400)]
    splits = assign_splits(unlucky + others, config)
    rare = {name: [r for r in part if r.label == "rare"] for name, part in splits.items()}
    assert (len(rare["test"]), len(rare["val"]), len(rare["train"])) == (1, 1, 10)
    assert not {r.image_sha256 for r in rare["test"]} & {r.image_sha256 for r in rare["train"]}
    # deterministic, and the other label is split by its hashes alone
    again = assign_splits(list(reversed(unlucky + others)), config)
    assert sorted(r.path for r in again["test"]) == sorted(r.path for r in splits["test"])
    common_test = sorted(r.path for r in splits["test"] if r.label == "common")
    assert common_test == sorted(r.path for r in others if split_of(r.image_sha256, config) == "test")
