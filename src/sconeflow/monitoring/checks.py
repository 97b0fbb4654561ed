"""Constraint checks and drift tests: a window's features against the baseline.

Violations use Model Monitor's check types: missing_column_check, extra_column_check,
data_type_check, completeness_check, categorical_values_check, baseline_drift_check.

Drift, and why these measures
-----------------------------
* Numbers (probabilities, confidence, margin, image statistics): the two-sample
  Kolmogorov-Smirnov test. Its statistic D is the L-infinity distance between the two
  empirical CDFs, which is exactly the distance Model Monitor compares against
  `comparison_threshold`, so the threshold keeps its AWS meaning. It needs no binning, is
  invariant to monotone rescaling (sharpness spans four decades, confidence piles up near 1),
  and has an exact, distribution-free p-value that accounts for both sample sizes.
  Wasserstein distance was rejected as the trigger: it is in the feature's units, so one
  threshold cannot serve brightness (0..1) and sharpness (0..10^4) alike.
* Classes (predicted_class, format): Pearson's chi-square test of homogeneity on the 2 x K
  table of baseline and window counts. It accounts for the sampling noise of both sides
  (a goodness-of-fit test would treat the baseline's proportions as exact). The effect size
  is the L-infinity distance between the two class-proportion vectors, compared with
  `categorical_comparison_threshold`. With `categorical_drift_method: LInfinity` only the
  distance is used, as in Model Monitor.

"Robust" comparison (our reading of `comparison_method`): a feature drifts only when both
  1. the difference is statistically significant after the Holm-Bonferroni correction over
     all features tested in the run (family-wise false alarm rate <= alpha, default 0.01,
     valid under any dependence between features - prob_bicycle and confidence are far from
     independent), and
  2. the distance exceeds the configured threshold (0.1 by default), so that a large window
     never alarms on a difference too small to matter.
Repeated inputs (the same image bytes: workflow retries, re-sent images) are tested once:
both tests assume independent observations, and a repeat adds none.

Measured with benchmarks/monitor_bench.py (CIFAR bicycle/motorcycle, a small CNN, 2 CPUs):
darkening, blur and noise are flagged at 10 requests, a 50/50 -> 90/10 class mix at 100;
0 of 40 in-distribution windows of 200 requests raised an alarm, against 40 of 40 for the
distance-only rule.

Accuracy without labels: the model's probabilities are temperature-calibrated, so the mean
top probability estimates the accuracy on the window (a calibrated model is right with
probability p when it says p). It is reported next to the baseline's value.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from sconeflow.monitoring import DEFAULT_ALPHA
from sconeflow.monitoring.baseline import Baseline, infer_type
from sconeflow.monitoring.features import OUTCOME_FEATURES, FeatureTable

MIN_DRIFT_RECORDS = 10  # fewer window rows than this: drift is not tested (too little power)
_NUMERIC_TYPES = ("Fractional", "Integral")


@dataclass(frozen=True)
class DriftTest:
    """One feature's comparison; `drifted` after the Holm correction and the threshold."""

    feature: str
    method: str  # "KS" | "ChiSquared" | "LInfinity"
    distance: float  # KS D or L-infinity distance of class proportions
    threshold: float
    p_value: float | None
    p_adjusted: float | None
    drifted: bool
    n_baseline: int
    n_window: int


@dataclass
class CheckResult:
    violations: list[dict[str, str]] = field(default_factory=list)
    drift: list[DriftTest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[DriftTest]:
        return [d for d in self.drift if d.drifted]

    def to_json(self) -> dict[str, Any]:
        return {"violations": self.violations, "drift": [asdict(d) for d in self.drift],
                "notes": self.notes}


def check_window(
    table: FeatureTable,
    statistics: dict[str, Any],
    baseline: Baseline,
    *,
    alpha: float = DEFAULT_ALPHA,
) -> CheckResult:
    """All constraint checks and drift tests of one window (`statistics` describes `table`)."""
    result = CheckResult()
    constraints = {f["name"]: f for f in baseline.constraints.get("features", [])}
    observed = {f["name"]: f for f in statistics["features"]}
    n = len(table)
    for name in constraints:
        if name not in observed:
            _violate(result, name, "missing_column_check",
                     f"Feature {name!r} is in the baseline but missing from the captured data.")
    for name in observed:
        if name not in constraints and name not in OUTCOME_FEATURES:
            _violate(result, name, "extra_column_check",
                     f"Feature {name!r} is in the captured data but not in the baseline.")
    if n == 0:
        result.notes.append("The window has no records: nothing to check.")
        return result
    for name, con in constraints.items():
        if name in observed:
            _check_feature(result, table, name, con, observed[name], n)
    config = baseline.constraints.get("monitoring_config", {}).get("distribution_constraints", {})
    if config.get("perform_comparison", "Enabled") != "Enabled":
        result.notes.append("Drift comparison is disabled in constraints.json.")
    elif n < MIN_DRIFT_RECORDS:
        result.notes.append(
            f"Only {n} records in the window; drift is tested from {MIN_DRIFT_RECORDS} on."
        )
    else:
        result.drift = _drift_tests(table, baseline, constraints, config, alpha)
        duplicates = int(n - table.first_occurrences().sum())
        if duplicates:
            result.notes.append(
                f"{duplicates} of {n} records repeat an input already in the window (same "
                "image bytes); drift tests count each distinct input once."
            )
        for d in result.drifted:
            _violate(result, d.feature, "baseline_drift_check", _drift_words(d))
    return result


def _violate(result: CheckResult, feature: str, check: str, description: str) -> None:
    result.violations.append(
        {"feature_name": feature, "constraint_check_type": check, "description": description}
    )


def _check_feature(
    result: CheckResult, table: FeatureTable, name: str, con: dict[str, Any],
    obs: dict[str, Any], n: int,
) -> None:
    expected, actual = con.get("inferred_type"), infer_type(table, name)
    compatible = expected == actual or (expected == "Fractional" and actual == "Integral")
    if not compatible:
        _violate(result, name, "data_type_check",
                 f"Expected {expected} values, found {actual} values.")
    stats = obs.get("numerical_statistics") or obs.get("string_statistics") or {}
    present = stats.get("common", {}).get("num_present", 0)
    completeness = present / n
    if completeness < float(con.get("completeness", 0.0)) - 1e-9:
        _violate(result, name, "completeness_check",
                 f"Completeness {completeness:.3f} is below the baseline's "
                 f"{con['completeness']:.3f}: {n - present} of {n} records have no value.")
    if con.get("num_constraints", {}).get("is_non_negative") and name in table.numeric:
        values = table.numeric[name]
        negative = int(np.sum(values < 0))
        if negative:
            _violate(result, name, "data_type_check",
                     f"{negative} of {n} values are negative; the baseline had none.")
    domain = con.get("string_constraints", {}).get("domains")
    if domain is not None and name in table.strings:
        unknown: dict[str, int] = {}
        for v in table.strings[name]:
            if v is not None and v not in domain:
                unknown[v] = unknown.get(v, 0) + 1
        if unknown:
            listed = ", ".join(f"{v!r} ({c})" for v, c in sorted(unknown.items())[:5])
            _violate(result, name, "categorical_values_check",
                     f"{sum(unknown.values())} of {n} values are outside the baseline's domain "
                     f"{domain}: {listed}.")


def _drift_tests(
    table: FeatureTable, baseline: Baseline, constraints: dict[str, Any],
    config: dict[str, Any], alpha: float,
) -> list[DriftTest]:
    num_threshold = float(config.get("comparison_threshold", 0.1))
    cat_threshold = float(config.get("categorical_comparison_threshold", 0.1))
    cat_method = str(config.get("categorical_drift_method", "ChiSquared"))
    raw: list[dict[str, Any]] = []
    # Identical inputs (a retried request, an image sent twice) are one observation of the
    # input distribution, not two; counting them twice would shrink the p-values below what
    # the data supports. The tests see each distinct input once.
    keep = table.first_occurrences()
    sample_num = baseline.sample.get("numeric", {})
    sample_cat = baseline.sample.get("categorical", {})
    for name in constraints:
        if name in table.numeric and name in sample_num:
            ref = np.asarray(sample_num[name]["values"], dtype=float)
            values = table.numeric[name][keep]
            cur = values[~np.isnan(values)]
            if ref.size < 2 or cur.size < 2:
                continue
            with warnings.catch_warnings():
                # With ties scipy falls back from the exact to the asymptotic p-value and
                # says so on stderr; the fallback is what we want, the message is noise.
                warnings.simplefilter("ignore", RuntimeWarning)
                ks = sps.ks_2samp(ref, cur)
            raw.append(dict(feature=name, method="KS", distance=float(ks.statistic),
                            threshold=num_threshold, p_value=float(ks.pvalue),
                            n_baseline=int(ref.size), n_window=int(cur.size)))
        elif name in table.strings and name in sample_cat:
            distinct = [v for v, k in zip(table.strings[name], keep, strict=True) if k]
            raw.append(_categorical(name, sample_cat[name], distinct, cat_method,
                                    cat_threshold))
    tested = [r for r in raw if r["p_value"] is not None]
    adjusted = holm([r["p_value"] for r in tested])
    for r, adj in zip(tested, adjusted, strict=True):
        r["p_adjusted"] = adj
    out = []
    for r in raw:
        p_adj: float | None = r.get("p_adjusted")
        # LInfinity: the distance alone decides, as in Model Monitor.
        significant = r["method"] == "LInfinity" or (p_adj is not None and p_adj < alpha)
        drifted = bool(significant and r["distance"] > r["threshold"])
        out.append(DriftTest(**{**r, "p_adjusted": p_adj, "drifted": drifted}))
    return out


def _categorical(
    name: str, ref_counts: dict[str, int], values: list[str | None], method: str,
    threshold: float,
) -> dict[str, Any]:
    cur_counts: dict[str, int] = {}
    for v in values:
        if v is not None:
            cur_counts[v] = cur_counts.get(v, 0) + 1
    cats = sorted(set(ref_counts) | set(cur_counts))
    table = np.array([[ref_counts.get(c, 0) for c in cats], [cur_counts.get(c, 0) for c in cats]],
                     dtype=float)  # (2, K)
    n_ref, n_cur = table.sum(axis=1)
    dist = float(np.max(np.abs(table[0] / max(n_ref, 1) - table[1] / max(n_cur, 1))))
    p: float | None = None
    if method == "ChiSquared" and n_ref > 0 and n_cur > 0:
        one = len(cats) < 2  # a single category cannot move
        p = 1.0 if one else float(sps.chi2_contingency(table, correction=False).pvalue)
    return dict(feature=name, method=method, distance=dist, threshold=threshold, p_value=p,
                n_baseline=int(n_ref), n_window=int(n_cur))


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1), in the input order."""
    m = len(p_values)
    order = np.argsort(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return [float(a) for a in adjusted]


def _drift_words(d: DriftTest) -> str:
    if d.method == "KS":
        what = (f"The distribution moved away from the baseline: KS distance {d.distance:.3f} "
                f"> threshold {d.threshold:g}")
    else:
        what = (f"The mix of values moved away from the baseline: largest change in share "
                f"{d.distance:.3f} > threshold {d.threshold:g}")
    if d.p_adjusted is not None:
        what += f", p = {d.p_adjusted:.2g} after Holm correction"
    return f"{what} ({d.n_window} records vs {d.n_baseline} baseline values)."
