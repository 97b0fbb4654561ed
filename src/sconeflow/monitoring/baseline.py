"""Baseline files in Model Monitor's schema (AWS_FORMATS.md section 5), from feature rows.

    statistics.json       per feature: counts, mean/sum/std/min/max and a KLL-style bucket
                          histogram (numbers), or distinct values and their counts (strings)
    constraints.json      what a window must satisfy: completeness, non-negativity, string
                          domains, and the drift comparison settings
    baseline_sample.json  ours: the raw values the two-sample drift tests need later
                          (numbers: at most 2,048 quantiles; strings: counts; the model's
                          embeddings of at most 500 images, with the model's digest)

The same `build_statistics` describes a monitoring window, so a run's statistics.json is
comparable with the baseline's. Functions take a FeatureTable, never a model: the CLI decides
where the rows come from (the model on staged images, or captured traffic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sconeflow.errors import MonitoringError, ObjectNotFoundError
from sconeflow.monitoring import DEFAULT_CATEGORICAL_METHOD, DEFAULT_COMPARISON_THRESHOLD
from sconeflow.monitoring.capture_reader import CaptureRecord
from sconeflow.monitoring.embeddings import MAX_ROWS, subsample
from sconeflow.monitoring.features import OUTCOME_FEATURES, FeatureTable
from sconeflow.store import Store

SKETCH_K = 2048  # values kept per numeric feature (sketch and sample)
HIST_BUCKETS = 10  # Model Monitor's default number of KLL buckets
MAX_DOMAIN = 50  # string features with more distinct values get no domain constraint
BASELINE_FILES = ("statistics.json", "constraints.json", "baseline_sample.json")


@dataclass(frozen=True)
class Baseline:
    statistics: dict[str, Any]
    constraints: dict[str, Any]
    sample: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        """The model's classes the baseline was built for (label order)."""
        return [str(c) for c in self.sample.get("class_names", [])]

    @property
    def embeddings(self) -> tuple[np.ndarray, str] | None:
        """(rows (M, D), model digest) of the baseline's embeddings, if it has them."""
        emb = self.sample.get("embedding")
        if not emb or not emb.get("values"):
            return None
        return np.asarray(emb["values"], dtype=np.float64), str(emb.get("model", ""))

    @property
    def est_accuracy(self) -> float | None:
        """Mean calibrated confidence of the baseline rows (its label-free accuracy)."""
        for f in self.statistics.get("features", []):
            if f["name"] == "confidence" and f["numerical_statistics"]["common"]["num_present"]:
                return float(f["numerical_statistics"]["mean"])
        return None


def infer_type(table: FeatureTable, name: str) -> str:
    """Fractional | Integral | String, as Model Monitor names them.

    Numbers are Fractional except the integral columns (pixels), which stay Integral while
    every value is whole; a column with no value keeps its declared type.
    """
    if name in table.strings:
        return "String"
    values = table.numeric[name]
    present = values[~np.isnan(values)]
    if name in table.integral:
        whole = present.size == 0 or bool(np.all(present == np.round(present)))
        return "Integral" if whole else "Fractional"
    return "Fractional"


def build_statistics(table: FeatureTable) -> dict[str, Any]:
    """statistics.json for the rows of `table`."""
    features: list[dict[str, Any]] = []
    n = len(table)
    for name, values in table.numeric.items():
        features.append(
            {"name": name, "inferred_type": infer_type(table, name),
             "numerical_statistics": _numeric_stats(values)}
        )
    for name, svalues in table.strings.items():
        counts = _counts(svalues)
        present = sum(counts.values())
        features.append(
            {
                "name": name,
                "inferred_type": "String",
                "string_statistics": {
                    "common": {"num_present": present, "num_missing": n - present},
                    "distinct_count": float(len(counts)),
                    "distribution": {
                        "categorical": {
                            "buckets": [{"value": v, "count": c} for v, c in counts.items()]
                        }
                    },
                },
            }
        )
    return {"version": 0, "dataset": {"item_count": n}, "features": features}


def _counts(values: list[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items()))


def _numeric_stats(values: np.ndarray) -> dict[str, Any]:
    present = np.sort(values[~np.isnan(values)])
    common = {"num_present": int(present.size), "num_missing": int(values.size - present.size)}
    if present.size == 0:
        # JSON has no NaN; zeros with num_present 0 say "nothing measured".
        return {"common": common, "mean": 0.0, "sum": 0.0, "std_dev": 0.0, "min": 0.0,
                "max": 0.0, "distribution": {"kll": {"buckets": [], "sketch": _sketch(present)}}}
    lo, hi = float(present[0]), float(present[-1])
    edges = np.linspace(lo, hi, HIST_BUCKETS + 1) if hi > lo else np.array([lo, hi])
    counts = np.histogram(present, bins=edges)[0] if hi > lo else np.array([present.size])
    buckets = [
        {"lower_bound": float(a), "upper_bound": float(b), "count": float(c)}
        for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]
    return {
        "common": common,
        "mean": float(present.mean()),
        "sum": float(present.sum()),
        "std_dev": float(present.std()),  # population std, as Deequ reports it
        "min": lo,
        "max": hi,
        "distribution": {"kll": {"buckets": buckets, "sketch": _sketch(present)}},
    }


def compact_sample(sorted_values: np.ndarray, k: int = SKETCH_K) -> np.ndarray:
    """At most k values with the same quantiles: all of them, or the (i + 0.5)/k quantiles."""
    if sorted_values.size <= k:
        return sorted_values
    return np.quantile(sorted_values, (np.arange(k) + 0.5) / k)


def _sketch(sorted_values: np.ndarray) -> dict[str, Any]:
    # A one-level KLL sketch: with k = 2,048 and at most 2,048 items kept it is exact for small
    # datasets and an evenly spaced quantile summary for large ones.
    data = [round(float(v), 8) for v in compact_sample(sorted_values)]
    return {"parameters": {"c": 0.64, "k": float(SKETCH_K)}, "data": [data]}


def build_constraints(
    statistics: dict[str, Any],
    *,
    comparison_threshold: float = DEFAULT_COMPARISON_THRESHOLD,
    categorical_threshold: float = DEFAULT_COMPARISON_THRESHOLD,
    categorical_method: str = DEFAULT_CATEGORICAL_METHOD,
) -> dict[str, Any]:
    """constraints.json suggested from baseline statistics, as Model Monitor suggests them."""
    if categorical_method not in ("ChiSquared", "LInfinity"):
        raise MonitoringError(
            f"categorical_drift_method {categorical_method!r} is not supported; "
            "expected 'ChiSquared' or 'LInfinity'"
        )
    n = statistics["dataset"]["item_count"]
    features = []
    for f in statistics["features"]:
        if f["name"] in OUTCOME_FEATURES:
            continue
        entry: dict[str, Any] = {"name": f["name"], "inferred_type": f["inferred_type"]}
        if "numerical_statistics" in f:
            st = f["numerical_statistics"]
            entry["completeness"] = st["common"]["num_present"] / n if n else 0.0
            entry["num_constraints"] = {"is_non_negative": bool(st["min"] >= 0)}
        else:
            st = f["string_statistics"]
            entry["completeness"] = st["common"]["num_present"] / n if n else 0.0
            values = [b["value"] for b in st["distribution"]["categorical"]["buckets"]]
            if len(values) <= MAX_DOMAIN:
                entry["string_constraints"] = {"domains": values}
        features.append(entry)
    return {
        "version": 0,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": comparison_threshold,
                "comparison_method": "Robust",
                "categorical_comparison_threshold": categorical_threshold,
                "categorical_drift_method": categorical_method,
            },
        },
    }


def build_sample(table: FeatureTable) -> dict[str, Any]:
    """baseline_sample.json: what the drift tests compare a window against."""
    numeric = {}
    for name, values in table.numeric.items():
        present = np.sort(values[~np.isnan(values)])
        numeric[name] = {
            "n": int(present.size),
            "values": [round(float(v), 8) for v in compact_sample(present)],
        }
    categorical = {
        name: _counts(v) for name, v in table.strings.items() if name not in OUTCOME_FEATURES
    }
    doc: dict[str, Any] = {"version": 1, "item_count": len(table), "class_names": table.classes,
                           "numeric": numeric, "categorical": categorical}
    if table.embeddings is not None:
        keep = table.first_occurrences()
        rows = subsample(table.embeddings[keep], MAX_ROWS)
        doc["embedding"] = {
            "model": table.embedding_model,
            "dim": int(table.embeddings.shape[1]),
            "n": len(rows),
            "values": [[round(float(v), 5) for v in row] for row in rows],
        }
    return doc


def build_baseline(table: FeatureTable, **constraint_options: Any) -> Baseline:
    """All three baseline documents from baseline feature rows."""
    if len(table) == 0:
        raise MonitoringError(
            "the baseline has no rows; stage images (`sconeflow stage`) or capture traffic first"
        )
    stats = build_statistics(table)
    return Baseline(stats, build_constraints(stats, **constraint_options), build_sample(table))


def baseline_prefix(schedule: str) -> str:
    return f"monitoring/{schedule}/baseline/"


def save_baseline(store: Store, bucket: str, prefix: str, baseline: Baseline) -> list[str]:
    """Write the three files under `prefix`; returns their keys."""
    docs = (baseline.statistics, baseline.constraints, baseline.sample)
    keys = []
    for name, doc in zip(BASELINE_FILES, docs, strict=True):
        key = prefix + name
        store.put(bucket, key, json.dumps(doc, indent=1).encode())
        keys.append(key)
    return keys


def load_baseline(store: Store, bucket: str, prefix: str) -> Baseline:
    """Read the three files under `prefix`; MonitoringError says how to create them."""
    docs = []
    for name in BASELINE_FILES:
        try:
            docs.append(json.loads(store.get(bucket, prefix + name)))
        except ObjectNotFoundError as err:
            raise MonitoringError(
                f"no baseline at {store.uri(bucket, prefix + name)}; create one with "
                "`sconeflow monitor baseline --endpoint <name>`"
            ) from err
        except ValueError as err:  # not JSON, or not UTF-8 text
            raise MonitoringError(f"{store.uri(bucket, prefix + name)} is not JSON: {err}") from err
    return Baseline(*docs)


def records_from_images(
    store: Store, bucket: str, prefix: str, model_dir: Path, keys: list[str] | None = None
) -> tuple[list[CaptureRecord], list[str]]:
    """The model's predictions on staged images under `prefix` (or exactly `keys`), shaped
    like captured records (through the endpoint's own preprocessing), and the model's
    class names."""
    from sconeflow.serving.inference import load_predictor, predict

    predictor = load_predictor(model_dir)
    if keys is None:
        keys = [k for k in store.list(bucket, prefix.rstrip("/") + "/")
                if k.lower().endswith((".png", ".jpg", ".jpeg"))]
    if not keys:
        raise MonitoringError(
            f"no images under {store.uri(bucket, prefix)}; stage data first (`sconeflow stage`)")
    images = [store.get(bucket, k) for k in keys]
    probs = predict(predictor, images)
    now = datetime.now(UTC).replace(microsecond=0)
    records = [
        CaptureRecord(event_id=k, inference_time=now, content_type="image/png", image=img,
                      probabilities=tuple(float(p) for p in row), source=k)
        for k, img, row in zip(keys, images, probs, strict=True)
    ]
    return records, list(predictor.meta.classes)
