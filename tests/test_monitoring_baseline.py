"""Features and baseline files: image statistics respond to the shifts they are meant for,
and statistics.json / constraints.json validate against Model Monitor's schema."""

from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import numpy as np
import pytest

from sconeflow.config import Settings
from sconeflow.errors import MonitoringError
from sconeflow.monitoring.baseline import (
    SKETCH_K,
    baseline_prefix,
    build_baseline,
    build_sample,
    compact_sample,
    load_baseline,
    save_baseline,
)
from sconeflow.monitoring.capture_reader import CaptureRecord
from sconeflow.monitoring.features import (
    compute_features,
    image_features,
    image_stats,
    prediction_features,
)
from sconeflow.monitoring.simulate import add_noise, blur, darken, decode_pngs, encode_pngs
from sconeflow.store import LocalStore, open_store
from test_monitoring_support import (
    CLASSES,
    CONSTRAINTS_SCHEMA,
    STATISTICS_SCHEMA,
    fake_probs,
    staged_split,
)

T0 = datetime(2025, 8, 22, 4, 0, 0, tzinfo=UTC)


def records(pngs: list[bytes], probs: np.ndarray) -> list[CaptureRecord]:
    return [CaptureRecord(f"id-{i}", T0, "image/png", png, tuple(p))
            for i, (png, p) in enumerate(zip(pngs, probs, strict=True))]


def test_image_stats_of_known_images() -> None:
    flat = np.full((2, 8, 8, 3), 51, np.uint8)  # 51/255 = 0.2
    flat[1] = 0
    s = image_stats(flat)
    assert s["brightness"] == pytest.approx([0.2, 0.0], abs=1e-6)
    assert s["contrast"] == pytest.approx([0, 0], abs=1e-6)
    assert s["sharpness"] == pytest.approx([0, 0], abs=1e-6)
    assert s["noise"] == pytest.approx([0, 0], abs=1e-6)
    assert s["saturation"] == pytest.approx([0, 0], abs=1e-6)  # grey
    red = np.zeros((1, 8, 8, 3), np.uint8)
    red[..., 0] = 200
    assert image_stats(red)["saturation"] == pytest.approx([1.0])
    # Pure Gaussian noise: Immerkaer's estimate recovers sigma (grey levels) within 10%.
    rng = np.random.default_rng(0)
    noisy = np.clip(128 + rng.normal(0, 10, (4, 64, 64, 1)), 0, 255).astype(np.uint8)
    est = image_stats(np.repeat(noisy, 3, axis=-1))["noise"]
    assert est == pytest.approx([10] * 4, rel=0.1)


def test_image_features_respond_to_shifts(staged_home: Settings) -> None:
    pngs, _ = staged_split(staged_home, "test")
    pixels = decode_pngs(pngs)
    base = image_features(pngs).numeric
    dark = image_features(encode_pngs(darken(pixels, 0.5))).numeric
    soft = image_features(encode_pngs(blur(pixels, 1.0))).numeric
    noisy = image_features(encode_pngs(add_noise(pixels, 12.0))).numeric
    assert np.median(dark["brightness"] / base["brightness"]) == pytest.approx(0.5, abs=0.02)
    assert np.median(soft["sharpness"] / base["sharpness"]) < 0.2
    # Per-channel sigma 12 is about 8 grey levels in luma, added in quadrature to the ~6 there.
    assert np.median(noisy["noise"] - base["noise"]) > 3
    assert set(base["width"]) == {32.0} and set(base["height"]) == {32.0}


def test_undecodable_images_are_missing_not_errors() -> None:
    t = image_features([b"not an image", encode_pngs(np.zeros((1, 4, 4, 3), np.uint8))[0]])
    assert np.isnan(t.numeric["brightness"][0]) and t.numeric["brightness"][1] == 0
    assert t.strings["format"] == [None, "PNG"]


def test_prediction_features() -> None:
    t = prediction_features([(0.2, 0.8), (0.9, 0.1), (0.3, 0.3, 0.4)], CLASSES)
    assert t.numeric["confidence"][:2] == pytest.approx([0.8, 0.9])
    assert t.numeric["margin"][:2] == pytest.approx([0.6, 0.8])
    assert t.strings["predicted_class"] == ["motorcycle", "bicycle", None]
    assert np.isnan(t.numeric["prob_bicycle"][2])  # three probabilities for two classes


def test_baseline_files_validate_and_describe_the_data(
    staged_home: Settings, local_store: LocalStore
) -> None:
    pngs, labels = staged_split(staged_home, "train")
    table = compute_features(records(pngs, fake_probs(labels)), CLASSES)
    base = build_baseline(table)
    jsonschema.validate(base.statistics, STATISTICS_SCHEMA)
    jsonschema.validate(base.constraints, CONSTRAINTS_SCHEMA)
    stats = {f["name"]: f for f in base.statistics["features"]}
    assert base.statistics["dataset"]["item_count"] == len(pngs) == 800
    bright = stats["brightness"]["numerical_statistics"]
    assert bright["common"] == {"num_present": 800, "num_missing": 0}
    assert sum(b["count"] for b in bright["distribution"]["kll"]["buckets"]) == 800
    assert bright["mean"] == pytest.approx(np.mean(table.numeric["brightness"]))
    assert stats["width"]["inferred_type"] == "Integral"
    assert stats["confidence"]["inferred_type"] == "Fractional"
    classes = stats["predicted_class"]["string_statistics"]
    assert {b["value"] for b in classes["distribution"]["categorical"]["buckets"]} == set(CLASSES)
    cons = {f["name"]: f for f in base.constraints["features"]}
    assert cons["predicted_class"]["string_constraints"]["domains"] == CLASSES
    assert cons["format"]["string_constraints"]["domains"] == ["PNG"]
    assert cons["brightness"]["completeness"] == 1.0
    assert cons["prob_bicycle"]["num_constraints"]["is_non_negative"] is True
    assert base.class_names == CLASSES
    assert 0.5 < (base.est_accuracy or 0) < 1
    # Round trip through the store.
    prefix = baseline_prefix("ep-monitor")
    save_baseline(local_store, "sconeflow", prefix, base)
    assert load_baseline(local_store, "sconeflow", prefix) == base


def test_missing_baseline_says_how_to_create_one(settings: Settings) -> None:
    with pytest.raises(MonitoringError, match="sconeflow monitor baseline"):
        load_baseline(open_store(settings), settings.bucket, baseline_prefix("nope"))


def test_empty_baseline_is_refused() -> None:
    with pytest.raises(MonitoringError, match="no rows"):
        build_baseline(compute_features([], CLASSES))


def test_compact_sample_keeps_quantiles() -> None:
    values = np.sort(np.random.default_rng(0).normal(size=50_000))
    sample = compact_sample(values)
    assert sample.size == SKETCH_K
    assert np.quantile(sample, [0.1, 0.5, 0.9]) == pytest.approx(
        np.quantile(values, [0.1, 0.5, 0.9]), abs=0.01)
    small = build_sample(prediction_features([(0.5, 0.5)] * 3, CLASSES))
    assert small["numeric"]["confidence"] == {"n": 3, "values": [0.5, 0.5, 0.5]}
