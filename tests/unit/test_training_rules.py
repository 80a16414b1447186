"""The rules of a training run that need no training: the schedule, the test figure's interval, which labels
train, and when the champion alias moves."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flows.settings import Settings
from models.data import DatasetTooSmall, FaceRecord
from models.training import champion_decision, plan_schedule, select_labels, wilson_interval


def config(**overrides):
    return dataclasses.replace(Settings(_env_file=None).train_config(), **overrides)


# ---------------------------------------------------------------- the schedule


def test_a_night_of_faces_gets_whole_batches_and_the_minimum_of_steps():
    # the run: 52 training and 8 validation faces at batch 64 took one optimizer step per epoch
    schedule = plan_schedule(52, 8, config(batch_size=64, epochs=60, min_steps=600, min_val_faces=50))
    assert schedule.fold_val  # 8 validation faces cannot choose a checkpoint: they are trained on
    assert schedule.batch_size == 15  # (52 + 8) // 4
    assert schedule.steps_per_epoch == 4 and schedule.steps >= 600


def test_the_full_animeface_set_keeps_the_measured_recipe():
    # 791/92/91 reached 91.2% with batch 64, 60 epochs, early stopping on val/loss: unchanged
    schedule = plan_schedule(791, 92, config(batch_size=64, epochs=60, min_steps=600, min_val_faces=50))
    assert (schedule.batch_size, schedule.fold_val, schedule.epochs) == (64, False, 60)
    assert schedule.steps == 12 * 60


def test_tiny_sets_never_get_a_batch_larger_than_themselves():
    schedule = plan_schedule(5, 0, config(batch_size=64, min_steps=10))
    assert schedule.batch_size == 5 and schedule.steps_per_epoch == 1 and schedule.steps >= 10


@pytest.mark.parametrize(("correct", "total", "low", "high"), [
    (8, 10, 0.4902, 0.9433),  # published Wilson score intervals (Newcombe 1998, Brown et al. 2001)
    (0, 10, 0.0, 0.2775),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_matches_published_values(correct: int, total: int, low: float, high: float):
    got = wilson_interval(correct, total)
    assert got == pytest.approx((low, high), abs=6e-4)


# ---------------------------------------------------------------- which labels train


def records(counts: dict[str, int]) -> list[FaceRecord]:
    return [FaceRecord(f"{label}/{i}.png", label, f"{label}{i}") for label, n in counts.items() for i in range(n)]


def test_a_label_under_the_minimum_is_left_out_and_the_others_train():
    chosen, left_out, few = select_labels(records({"miku": 40, "nino": 12, "ichika": 3}),
                                          ["miku", "nino", "ichika", "yotsuba"], config(min_per_label=10,
                                                                                        trusted_per_label=30))
    assert left_out == {"ichika": 3, "yotsuba": 0}  # a label of the job with no face at all is named too
    assert few == {"nino": 12}
    assert {r.label for r in chosen} == {"miku", "nino"} and len(chosen) == 52


def test_fewer_than_two_trainable_labels_is_a_clear_error():
    with pytest.raises(DatasetTooSmall, match=r"at least 2 labels.*miku \(40\), nino \(4\)"):
        select_labels(records({"miku": 40, "nino": 4}), ["miku", "nino"], config(min_per_label=10))


# ---------------------------------------------------------------- the champion


JOB = ["ichika", "miku", "nino"]


def decide(new_correct: int, champion_correct: int | None, total: int = 40, new_labels=JOB, champion_labels=JOB,
           job=JOB, left_out=None, min_test: int = 20):
    return champion_decision(list(new_labels), new_correct, total, list(job), left_out or {}, min_test, "3",
                             list(champion_labels), champion_correct)


def test_a_tie_keeps_the_champion_even_where_float32_says_otherwise():
    # the bug: torchmetrics' float32 16/40 is 0.4000000059604645, which "beat" the champion's exact 0.4
    assert float(torch.tensor(16 / 40, dtype=torch.float32)) > 16 / 40
    crowned, reason = decide(16, 16)
    assert not crowned and "ties" in reason and "16/40" in reason


def test_better_crowns_and_worse_keeps():
    assert decide(17, 16) == (True, "17/40 beats version 3's 16/40 on the same test split")
    crowned, reason = decide(15, 16)
    assert not crowned and "version 3 stays champion" in reason and "is below" in reason


def test_a_test_split_too_small_to_judge_keeps_the_champion():
    crowned, reason = decide(10, 2, total=12, min_test=20)
    assert not crowned and "12 faces, too few to judge" in reason


def test_a_model_that_knows_a_label_the_champion_lacks_replaces_it():
    crowned, reason = decide(5, None, champion_labels=["ichika", "miku"])
    assert crowned and "it knows nino, which version 3 lacks" in reason


def test_a_model_missing_a_label_the_champion_knows_does_not_replace_it():
    crowned, reason = decide(39, None, new_labels=["ichika", "miku"], left_out={"nino": 4})
    assert not crowned and "it knows nino, which this model lacks" in reason and "nino (4 faces)" in reason


def test_a_champion_with_a_label_removed_from_the_job_is_replaced():
    crowned, reason = decide(20, None, new_labels=["ichika", "miku"], job=["ichika", "miku"])
    assert crowned and "labels no longer in the job (nino)" in reason


def test_labels_that_differ_both_ways_keep_the_champion_and_say_so():
    crowned, reason = decide(30, None, new_labels=["ichika", "miku", "yotsuba"], job=JOB + ["yotsuba"],
                             left_out={"nino": 5})
    assert not crowned and "differ both ways" in reason


def test_the_first_champion_says_which_labels_it_lacks():
    crowned, reason = champion_decision(["ichika", "miku"], 7, 9, JOB, {"nino": 0}, 20)
    assert crowned and "first champion: 7/9" in reason and "does not know nino (0 faces)" in reason
