"""Helpers for the monitoring tests (no tests here): JSON Schemas of Model Monitor's files
(AWS_FORMATS.md section 5), staged images with labels, plausible model outputs, a tiny ONNX
model artifact (onnx helper API, no torch)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from sconeflow.config import Settings
from sconeflow.staging import parse_lst
from sconeflow.store import Store, open_store

CLASSES = ["bicycle", "motorcycle"]

_COMMON = {
    "type": "object",
    "required": ["num_present", "num_missing"],
    "properties": {"num_present": {"type": "integer", "minimum": 0},
                   "num_missing": {"type": "integer", "minimum": 0}},
}
_NUMERICAL = {
    "type": "object",
    "required": ["common", "mean", "sum", "std_dev", "min", "max", "distribution"],
    "properties": {
        "common": _COMMON,
        **{k: {"type": "number"} for k in ("mean", "sum", "std_dev", "min", "max")},
        "distribution": {
            "type": "object",
            "required": ["kll"],
            "properties": {"kll": {
                "type": "object",
                "required": ["buckets", "sketch"],
                "properties": {
                    "buckets": {"type": "array", "items": {
                        "type": "object",
                        "required": ["lower_bound", "upper_bound", "count"],
                        "properties": {k: {"type": "number"} for k in
                                       ("lower_bound", "upper_bound", "count")},
                        "additionalProperties": False,
                    }},
                    "sketch": {"type": "object"},
                },
            }},
        },
    },
}
_STRING = {
    "type": "object",
    "required": ["common", "distinct_count", "distribution"],
    "properties": {
        "common": _COMMON,
        "distinct_count": {"type": "number", "minimum": 0},
        "distribution": {
            "type": "object",
            "required": ["categorical"],
            "properties": {"categorical": {
                "type": "object",
                "required": ["buckets"],
                "properties": {"buckets": {"type": "array", "items": {
                    "type": "object", "required": ["value", "count"],
                    "properties": {"value": {"type": "string"},
                                   "count": {"type": "integer", "minimum": 0}},
                    "additionalProperties": False,
                }}},
            }},
        },
    },
}
STATISTICS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "dataset", "features"],
    "properties": {
        "version": {"const": 0},
        "dataset": {"type": "object", "required": ["item_count"],
                    "properties": {"item_count": {"type": "integer", "minimum": 0}}},
        "features": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "inferred_type"],
            "properties": {
                "name": {"type": "string"},
                "inferred_type": {"enum": ["Fractional", "Integral", "String"]},
                "numerical_statistics": _NUMERICAL,
                "string_statistics": _STRING,
            },
            "oneOf": [{"required": ["numerical_statistics"]},
                      {"required": ["string_statistics"]}],
            "additionalProperties": False,
        }},
    },
    "additionalProperties": False,
}
CONSTRAINTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "features", "monitoring_config"],
    "properties": {
        "version": {"const": 0},
        "features": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "inferred_type", "completeness"],
            "properties": {
                "name": {"type": "string"},
                "inferred_type": {"enum": ["Fractional", "Integral", "String"]},
                "completeness": {"type": "number", "minimum": 0, "maximum": 1},
                "num_constraints": {
                    "type": "object", "required": ["is_non_negative"],
                    "properties": {"is_non_negative": {"type": "boolean"}},
                    "additionalProperties": False},
                "string_constraints": {
                    "type": "object", "required": ["domains"],
                    "properties": {"domains": {"type": "array", "items": {"type": "string"}}},
                    "additionalProperties": False},
            },
            "additionalProperties": False,
        }},
        "monitoring_config": {
            "type": "object",
            "required": ["evaluate_constraints", "emit_metrics", "distribution_constraints"],
            "properties": {
                "evaluate_constraints": {"enum": ["Enabled", "Disabled"]},
                "emit_metrics": {"enum": ["Enabled", "Disabled"]},
                "distribution_constraints": {
                    "type": "object",
                    "required": ["perform_comparison", "comparison_threshold",
                                 "comparison_method", "categorical_comparison_threshold",
                                 "categorical_drift_method"],
                    "properties": {
                        "perform_comparison": {"enum": ["Enabled", "Disabled"]},
                        "comparison_threshold": {"type": "number"},
                        "comparison_method": {"enum": ["Robust", "Simple"]},
                        "categorical_comparison_threshold": {"type": "number"},
                        "categorical_drift_method": {"enum": ["LInfinity", "ChiSquared"]},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
VIOLATIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["violations"],
    "properties": {"violations": {"type": "array", "items": {
        "type": "object",
        "required": ["feature_name", "constraint_check_type", "description"],
        "properties": {
            "feature_name": {"type": "string"},
            "constraint_check_type": {"enum": [
                "data_type_check", "completeness_check", "baseline_drift_check",
                "missing_column_check", "extra_column_check", "categorical_values_check"]},
            "description": {"type": "string", "minLength": 1},
        },
        "additionalProperties": False,
    }}},
    "additionalProperties": False,
}


def staged_split(settings: Settings, split: str) -> tuple[list[bytes], np.ndarray]:
    """PNG bytes and labels of data/<split>/ in .lst order."""
    store = open_store(settings)
    rows = parse_lst(store.get(settings.bucket, f"data/{split}.lst").decode())
    pngs = [store.get(settings.bucket, f"data/{split}/{name}") for _, _, name in rows]
    return pngs, np.array([label for _, label, _ in rows])


def fake_probs(labels: np.ndarray, seed: int = 0, accuracy: float = 0.85) -> np.ndarray:
    """(N, 2) probabilities of a plausible calibrated classifier for these true labels."""
    rng = np.random.default_rng(seed)
    right = rng.random(labels.size) < accuracy
    predicted = np.where(right, labels, 1 - labels)
    top = rng.uniform(0.6, 1.0, labels.size)
    probs = np.empty((labels.size, 2))
    probs[np.arange(labels.size), predicted] = top
    probs[np.arange(labels.size), 1 - predicted] = 1 - top
    return probs


def stage_endpoint_captures(
    store: Store, bucket: str, staged: Settings, endpoint: str, schedule: str, count: int
) -> None:
    """What a deployed endpoint leaves in S3 for its monitor: a baseline (from the staged
    train split, as `aws deploy` uploads it) and `count` captures over the last hour."""
    from datetime import UTC, datetime, timedelta

    from sconeflow.monitoring.baseline import baseline_prefix, build_baseline, save_baseline
    from sconeflow.monitoring.capture_reader import CaptureRecord
    from sconeflow.monitoring.features import compute_features
    from sconeflow.monitoring.simulate import write_capture

    pngs, labels = staged_split(staged, "train")
    base = [CaptureRecord(f"b{i}", datetime.now(UTC), "image/png", p, tuple(q))
            for i, (p, q) in enumerate(zip(pngs, fake_probs(labels), strict=True))]  # fmt: skip
    save_baseline(store, bucket, baseline_prefix(schedule),
                  build_baseline(compute_features(base, CLASSES)))  # fmt: skip
    test_pngs, test_labels = staged_split(staged, "test")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50)
    write_capture(store, bucket, endpoint, test_pngs[:count], fake_probs(test_labels[:count], 1),
                  start=start, interval=timedelta(seconds=30))  # fmt: skip


def build_tiny_onnx() -> bytes:
    """probabilities = softmax(W . mean_rgb(input) + b): colour decides the class."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[2.0, 0.0, -2.0], [-2.0, 0.0, 2.0]], np.float32)  # (K, C)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(2, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def write_tiny_artifact(path: Path) -> Path:
    """model.tar.gz with model.onnx + model.json, as training writes it."""
    src = path.parent / "_tiny_model"
    src.mkdir(parents=True, exist_ok=True)
    (src / "model.onnx").write_bytes(build_tiny_onnx())
    meta = {"classes": CLASSES, "image_shape": [3, 32, 32], "output": "probabilities",
            "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "temperature": 1.0}
    (src / "model.json").write_text(json.dumps(meta))
    with tarfile.open(path, "w:gz") as tar:
        for name in ("model.onnx", "model.json"):
            tar.add(src / name, arcname=name)
    return path
