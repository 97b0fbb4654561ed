"""Constraint checks and drift tests against a baseline from the staged training images,
plus ground truth metrics."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import jsonschema
import numpy as np
import pytest
from PIL import Image

from sconeflow.config import Settings
from sconeflow.monitoring.baseline import Baseline, build_baseline, build_statistics
from sconeflow.monitoring.capture_reader import CaptureRecord
from sconeflow.monitoring.checks import CheckResult, check_window, holm
from sconeflow.monitoring.features import compute_features
from sconeflow.monitoring.outcomes import (
    WorkflowOutcome,
    merge_ground_truth,
    outcome_index,
    quality_metrics,
    read_ground_truth,
)
from sconeflow.monitoring.simulate import add_noise, blur, darken, decode_pngs, encode_pngs
from sconeflow.store import LocalStore
from test_monitoring_support import CLASSES, VIOLATIONS_SCHEMA, fake_probs, staged_split

T0 = datetime(2025, 8, 22, 4, 0, 0, tzinfo=UTC)


def records(pngs: list[bytes], probs: np.ndarray, ctype: str = "image/png",
            ids: list[str] | None = None) -> list[CaptureRecord]:
    return [CaptureRecord(f"ev-{i}", T0, ctype, png, tuple(p),
                          inference_id=ids[i] if ids else None)
            for i, (png, p) in enumerate(zip(pngs, probs, strict=True))]


@pytest.fixture(scope="module")
def baseline(staged_home: Settings) -> Baseline:
    pngs, labels = staged_split(staged_home, "train")
    return build_baseline(compute_features(records(pngs, fake_probs(labels, seed=0)), CLASSES))


@pytest.fixture(scope="module")
def test_split(staged_home: Settings) -> tuple[list[bytes], np.ndarray]:
    return staged_split(staged_home, "test")


def check(recs: list[CaptureRecord], baseline: Baseline, classes: list[str] = CLASSES
          ) -> CheckResult:
    table = compute_features(recs, classes)
    result = check_window(table, build_statistics(table), baseline)
    jsonschema.validate({"violations": result.violations}, VIOLATIONS_SCHEMA)
    return result


def flagged(result: CheckResult, check_type: str = "baseline_drift_check") -> set[str]:
    return {v["feature_name"] for v in result.violations
            if v["constraint_check_type"] == check_type}


def test_in_distribution_window_has_no_violation(baseline: Baseline, test_split: tuple) -> None:
    pngs, labels = test_split
    result = check(records(pngs, fake_probs(labels, seed=1)), baseline)
    assert result.violations == []
    assert {d.feature for d in result.drift} >= {"brightness", "sharpness", "predicted_class"}
    assert all(d.p_adjusted is not None and d.p_adjusted >= d.p_value for d in result.drift)


@pytest.mark.parametrize(
    ("shift", "feature"),
    [(lambda x: darken(x, 0.5), "brightness"), (lambda x: blur(x, 1.0), "sharpness"),
     (lambda x: add_noise(x, 12.0), "noise")],
    ids=["darken", "blur", "noise"],
)
def test_image_shifts_are_flagged(baseline: Baseline, test_split: tuple, shift, feature) -> None:
    pngs, labels = test_split
    shifted = encode_pngs(shift(decode_pngs(pngs[:100])))
    result = check(records(shifted, fake_probs(labels[:100], seed=2)), baseline)
    assert feature in flagged(result)
    drift = next(d for d in result.drift if d.feature == feature)
    assert drift.method == "KS" and drift.distance > 0.3 and drift.p_adjusted < 1e-3
    assert "KS distance" in next(v["description"] for v in result.violations
                                 if v["feature_name"] == feature)


def test_class_mix_shift_is_flagged(baseline: Baseline, test_split: tuple) -> None:
    pngs, labels = test_split
    idx = np.concatenate([np.flatnonzero(labels == 0)[:90], np.flatnonzero(labels == 1)[:10]])
    result = check(records([pngs[i] for i in idx], fake_probs(labels[idx], seed=3)), baseline)
    assert "predicted_class" in flagged(result)
    d = next(d for d in result.drift if d.feature == "predicted_class")
    assert d.method == "Fisher exact" and d.distance > 0.2  # 2 classes: exact at any size
    assert "corrected p" in d.decided_by and "distance" in d.decided_by


def test_a_small_window_of_mostly_bicycles_is_flagged(baseline: Baseline,
                                                      test_split: tuple) -> None:
    """The issue's window: the model called 55 of 80 images bicycle (baseline about 50/50)."""
    pngs, labels = test_split
    probs = fake_probs(labels[:80], seed=7, accuracy=1.0)
    called = np.r_[np.zeros(55, int), np.ones(25, int)]
    probs[np.arange(80), called], probs[np.arange(80), 1 - called] = 0.9, 0.1
    result = check(records(pngs[:80], probs), baseline)
    d = next(d for d in result.drift if d.feature == "predicted_class")
    assert d.method == "Fisher exact" and d.p_value is not None and d.p_value < 0.002
    assert d.drifted and "predicted_class" in flagged(result)


def test_every_verdict_states_the_rule_that_decided_it(baseline: Baseline,
                                                       test_split: tuple) -> None:
    """No row can read as a contradiction: DRIFT iff significant after Holm and over the
    distance floor, and `decided_by` names the condition that settled it."""
    pngs, labels = test_split
    images = decode_pngs(pngs[:40])
    images[:20] = darken(images[:20], 0.8)  # a mild change: some distances over 0.1
    result = check(records(encode_pngs(images), fake_probs(labels[:40], seed=8)), baseline)
    assert result.drift
    for d in result.drift:
        assert d.p_adjusted is not None and d.alpha == 0.01
        expected = d.p_adjusted < d.alpha and d.distance > d.threshold
        assert d.drifted == expected, d
        if d.p_adjusted >= d.alpha:
            assert "not significant" in d.decided_by
            if d.distance > d.threshold:
                assert "chance" in d.decided_by  # the distance over the floor is explained
        elif not d.drifted:
            assert "too small to matter" in d.decided_by


def test_categorical_test_is_exact_for_small_windows() -> None:
    from sconeflow.monitoring.checks import _homogeneity

    two = np.array([[100, 100], [55, 25]])
    name, odds, p = _homogeneity(two)
    assert name == "Fisher exact" and p == pytest.approx(0.005122, abs=1e-5)
    assert odds == pytest.approx((100 * 25) / (100 * 55))
    small = np.array([[40, 40, 20], [3, 1, 6]])  # expected counts under 5 in the window
    name, _, p_mc = _homogeneity(small)
    assert name == "chi-square (Monte Carlo)" and 0 < p_mc < 1
    name, _, _ = _homogeneity(np.array([[400, 400, 200], [30, 40, 30]]))
    assert name == "chi-square"
    assert _homogeneity(np.array([[10, 0], [5, 0]]))[2] == 1.0  # one category cannot move


def test_completeness_and_categorical_values(baseline: Baseline, test_split: tuple) -> None:
    pngs, labels = test_split
    pngs = list(pngs[:60])
    pngs[:5] = [b"\x89PNG but not really"] * 5  # undecodable images
    buf = io.BytesIO()
    Image.open(io.BytesIO(pngs[10])).save(buf, "JPEG", quality=90)
    pngs[10:20] = [buf.getvalue()] * 10  # a client starts sending JPEG
    result = check(records(pngs, fake_probs(labels[:60], seed=4)), baseline)
    assert "brightness" in flagged(result, "completeness_check")
    assert flagged(result, "categorical_values_check") == {"format"}
    text = next(v["description"] for v in result.violations
                if v["constraint_check_type"] == "categorical_values_check")
    assert "'JPEG' (10)" in text


def test_other_model_classes_are_missing_and_extra_columns(baseline: Baseline,
                                                           test_split: tuple) -> None:
    pngs, labels = test_split
    result = check(records(pngs[:30], fake_probs(labels[:30])), baseline, ["car", "truck"])
    assert flagged(result, "missing_column_check") == {"prob_bicycle", "prob_motorcycle"}
    assert flagged(result, "extra_column_check") == {"prob_car", "prob_truck"}
    assert flagged(result, "categorical_values_check") == {"predicted_class"}


def test_small_window_skips_drift_with_a_note(baseline: Baseline, test_split: tuple) -> None:
    pngs, labels = test_split
    result = check(records(pngs[:5], fake_probs(labels[:5])), baseline)
    assert result.drift == [] and "drift is tested from 10" in result.notes[0]


def test_linfinity_method_uses_distance_only(test_split: tuple) -> None:
    pngs, labels = test_split
    base = build_baseline(compute_features(records(pngs, fake_probs(labels)), CLASSES),
                          categorical_method="LInfinity")
    result = check(records(pngs[:100], fake_probs(np.zeros(100, int), seed=5)), base)
    d = next(d for d in result.drift if d.feature == "predicted_class")
    assert d.method == "LInfinity" and d.p_value is None and d.drifted


def test_holm_matches_hand_computation() -> None:
    # Sorted p: 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_quality_metrics() -> None:
    y_true = ["bicycle"] * 6 + ["motorcycle"] * 4
    y_pred = ["bicycle"] * 5 + ["motorcycle"] + ["motorcycle"] * 3 + ["bicycle"]
    q = quality_metrics(y_true, y_pred, CLASSES)
    assert q["confusion_matrix"] == {"bicycle": {"bicycle": 5, "motorcycle": 1},
                                     "motorcycle": {"bicycle": 1, "motorcycle": 3}}
    assert q["accuracy"]["value"] == pytest.approx(0.8)
    f1_b, f1_m = 2 * 5 / (2 * 5 + 1 + 1), 2 * 3 / (2 * 3 + 1 + 1)
    assert q["weighted_f1"]["value"] == pytest.approx(0.6 * f1_b + 0.4 * f1_m)
    assert 0 < q["accuracy"]["standard_deviation"] < 0.3


def test_ground_truth_merges_on_inference_id_else_event_id(local_store: LocalStore) -> None:
    lines = [
        '{"groundTruthData":{"data":"1","encoding":"CSV"},"eventMetadata":{"eventId":"inf-0"},'
        '"eventVersion":"0"}',
        '{"groundTruthData":{"data":"bicycle","encoding":"CSV"},"eventMetadata":'
        '{"eventId":"ev-1"},"eventVersion":"0"}',
        '{"groundTruthData":{"data":"7","encoding":"CSV"},"eventMetadata":{"eventId":"ev-2"},'
        '"eventVersion":"0"}',
        "not json",
    ]
    local_store.put("sconeflow", "ground_truth/ep/2025/08/22/04/gt.jsonl",
                    "\n".join(lines).encode())
    truth = read_ground_truth(local_store, "sconeflow", "ground_truth/ep/", CLASSES)
    assert truth.labels == {"inf-0": "motorcycle", "ev-1": "bicycle"}
    assert [p.line for p in truth.problems] == [3, 4]
    recs = records([b""] * 3, np.array([[0.1, 0.9]] * 3), ids=["inf-0", None, None])
    y_true, y_pred = merge_ground_truth(recs, ["motorcycle", "motorcycle", "bicycle"], truth)
    assert (y_true, y_pred) == (["motorcycle", "bicycle"], ["motorcycle", "motorcycle"])


def test_workflow_outcomes_join_on_inference_id() -> None:
    out = [WorkflowOutcome(T0, "FAILED", "exec-1", "test/a.png"),
           WorkflowOutcome(T0, "SUCCEEDED", "exec-2", "test/b.png")]
    recs = records([b"", b"", b""], np.array([[0.5, 0.5]] * 3), ids=["exec-1", "test/b.png", "x"])
    table = compute_features(recs, CLASSES, outcomes=outcome_index(out))
    assert table.strings["workflow_status"] == ["FAILED", "SUCCEEDED", None]
    assert "workflow_status" not in {v for v in build_baseline(table).sample["categorical"]}



def test_repeated_inputs_count_once_in_drift_tests(baseline: Baseline,
                                                   test_split: tuple) -> None:
    pngs, labels = test_split
    # 20 images, each sent 10 times (retries): 200 records, 20 observations.
    idx = np.repeat(np.arange(20), 10)
    result = check(records([pngs[i] for i in idx], fake_probs(labels[idx], seed=6)), baseline)
    assert all(d.n_window == 20 for d in result.drift)
    assert any("180 of 200 records repeat an input" in n for n in result.notes)
