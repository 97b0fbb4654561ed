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
* Classes (predicted_class, format): a test of homogeneity of the 2 x K table of baseline
  and window counts, which accounts for the sampling noise of both sides (a goodness-of-fit
  or exact binomial test against the baseline's shares would treat a 100-image baseline's
  shares as exact, and alarm too often). Windows are often small (an hour of traffic, tens
  of requests), where Pearson's chi-square is anti-conservative once an expected count is
  under 5, so the test is exact when the window is small:
    - 2 classes: Fisher's exact test (exact at every size; microseconds). Boschloo's
      unconditional test is a little more powerful but took 270 s on a 2,000-row baseline.
    - more classes, every expected count >= 5 (Cochran's rule): Pearson's chi-square.
    - more classes, some expected count < 5: the same chi-square statistic with a Monte
      Carlo p-value over 9,999 tables with the observed margins (the exact conditional
      test, as R's chisq.test(simulate.p.value = TRUE)).
  The effect size is the L-infinity distance between the two class-share vectors, compared
  with `categorical_comparison_threshold`. With `categorical_drift_method: LInfinity` only
  the distance is used, as in Model Monitor.
* Embedding (with the deployed model at hand): the maximum mean discrepancy permutation test
  of monitoring.embeddings; its statistic MMD^2 has no natural unit, so it has no distance
  floor and its p-value decides.

"Robust" comparison (our reading of `comparison_method`): a feature drifts only when both
  1. the difference is statistically significant after correcting for every test in the
     run, and
  2. the distance exceeds the configured threshold (0.1 by default), so that a large window
     never alarms on a difference too small to matter.
  The correction keeps the chance of any false alarm in a run at or below alpha (default
  0.01) whatever the dependence between features (prob_bicycle and confidence are nearly
  the same variable). The tests answer three questions, and alpha is split equally between
  them: did the model's decisions change (predicted_class), did what the model sees change
  (embedding), did anything else change (every other feature, Holm-Bonferroni within). The
  corrected p-value is the Holm-adjusted p within its question times the number of
  questions asked, compared with alpha. One family of fourteen tests would let a question
  that matters most (55 of 80 images called bicycle, p = 0.0014) drown in the correction
  for thirteen others (corrected p = 0.013).
  Each test records which of the two decided (`decided_by`), so that a distance above the
  threshold next to "ok" reads as what it is: a difference this window is too small to
  tell from chance.
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
from sconeflow.monitoring.embeddings import mmd_test
from sconeflow.monitoring.features import OUTCOME_FEATURES, FeatureTable

MIN_DRIFT_RECORDS = 10  # fewer window rows than this: drift is not tested (too little power)
EMBEDDING_FEATURE = "embedding"  # the name the embedding test goes by in tables and files
MONTE_CARLO_TABLES = 9999  # resampled tables for the small-count chi-square p-value
_NUMERIC_TYPES = ("Fractional", "Integral")


@dataclass(frozen=True)
class DriftTest:
    """One feature's comparison and the rule that decided it.

    method: "KS" | "Fisher exact" | "chi-square" | "chi-square (Monte Carlo)" |
    "LInfinity" | "MMD"; statistic: KS D, Fisher's odds ratio, chi-square, or MMD^2;
    distance: KS D, L-infinity distance of class shares, or MMD^2; threshold: the distance
    floor (0 for MMD: none); decided_by: the condition that settled the verdict, in words.
    """

    feature: str
    method: str
    distance: float
    threshold: float
    p_value: float | None
    p_adjusted: float | None
    drifted: bool
    n_baseline: int
    n_window: int
    statistic: float | None = None
    alpha: float = DEFAULT_ALPHA
    decided_by: str = ""


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
    keep: dict[str, Any] | None = None,
) -> CheckResult:
    """All constraint checks and drift tests of one window (`statistics` describes `table`).

    `keep`, when given, receives what the plots need beyond the table (the MMD test's
    permutation null, under "mmd")."""
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
        result.drift = _drift_tests(table, baseline, constraints, config, alpha, result.notes,
                                    keep if keep is not None else {})
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
    config: dict[str, Any], alpha: float, notes: list[str], keep: dict[str, Any],
) -> list[DriftTest]:
    num_threshold = float(config.get("comparison_threshold", 0.1))
    cat_threshold = float(config.get("categorical_comparison_threshold", 0.1))
    cat_method = str(config.get("categorical_drift_method", "ChiSquared"))
    raw: list[dict[str, Any]] = []
    # Identical inputs (a retried request, an image sent twice) are one observation of the
    # input distribution, not two; counting them twice would shrink the p-values below what
    # the data supports. The tests see each distinct input once.
    keep_rows = table.first_occurrences()
    sample_num = baseline.sample.get("numeric", {})
    sample_cat = baseline.sample.get("categorical", {})
    for name in constraints:
        if name in table.numeric and name in sample_num:
            ref = np.asarray(sample_num[name]["values"], dtype=float)
            values = table.numeric[name][keep_rows]
            cur = values[~np.isnan(values)]
            if ref.size < 2 or cur.size < 2:
                continue
            with warnings.catch_warnings():
                # With ties scipy falls back from the exact to the asymptotic p-value and
                # says so on stderr; the fallback is what we want, the message is noise.
                warnings.simplefilter("ignore", RuntimeWarning)
                ks = sps.ks_2samp(ref, cur)
            raw.append(dict(feature=name, method="KS", distance=float(ks.statistic),
                            statistic=float(ks.statistic), threshold=num_threshold,
                            p_value=float(ks.pvalue), n_baseline=int(ref.size),
                            n_window=int(cur.size)))
        elif name in table.strings and name in sample_cat:
            distinct = [v for v, k in zip(table.strings[name], keep_rows, strict=True) if k]
            raw.append(_categorical(name, sample_cat[name], distinct, cat_method,
                                    cat_threshold))
    emb = _embedding_test(table, baseline, keep_rows, notes, keep)
    if emb is not None:
        raw.append(emb)
    correct_p_values(raw)
    return [_decide(r, alpha) for r in raw]


def question_of(feature: str) -> str:
    """The question a feature's test answers (the families alpha is split between)."""
    if feature == "predicted_class":
        return "decisions"
    return "embedding" if feature == EMBEDDING_FEATURE else "features"


def correct_p_values(tests: list[dict[str, Any]]) -> None:
    """Set `p_adjusted` on each test with a p-value: Holm within its question, times the
    number of questions asked (Bonferroni across them), capped at 1."""
    families: dict[str, list[dict[str, Any]]] = {}
    for r in tests:
        if r["p_value"] is not None:
            families.setdefault(question_of(r["feature"]), []).append(r)
    for members in families.values():
        adjusted = holm([r["p_value"] for r in members])
        for r, adj in zip(members, adjusted, strict=True):
            r["p_adjusted"] = min(1.0, adj * len(families))


def _decide(r: dict[str, Any], alpha: float) -> DriftTest:
    """The verdict of one test under the Robust rule, and the condition that settled it."""
    p_adj: float | None = r.get("p_adjusted")
    dist, floor = r["distance"], r["threshold"]
    if r["method"] == "LInfinity":  # the distance alone decides, as in Model Monitor
        drifted = dist > floor
        why = (f"distance only (LInfinity): {dist:.3f} {'>' if drifted else '<='} "
               f"threshold {floor:g}")
    elif p_adj is None:
        drifted, why = False, "no test possible (a side has no value)"
    elif p_adj >= alpha:
        drifted = False
        why = f"corrected p {p_adj:.2g} >= alpha {alpha:g}: not significant"
        if dist > floor and r["method"] != "MMD":
            why += f" (distance {dist:.3f} > {floor:g}, but chance can make that at this size)"
    elif r["method"] == "MMD":
        drifted, why = True, f"corrected p {p_adj:.2g} < alpha {alpha:g} (MMD: no distance floor)"
    elif dist > floor:
        drifted = True
        why = f"corrected p {p_adj:.2g} < alpha {alpha:g} and distance {dist:.3f} > {floor:g}"
    else:
        drifted = False
        why = (f"distance {dist:.3f} <= threshold {floor:g}: significant (corrected p "
               f"{p_adj:.2g}) but too small to matter")
    return DriftTest(**{**r, "p_adjusted": p_adj, "drifted": bool(drifted), "alpha": alpha,
                        "decided_by": why})


def _embedding_test(table: FeatureTable, baseline: Baseline, keep_rows: np.ndarray,
                    notes: list[str], keep: dict[str, Any]) -> dict[str, Any] | None:
    ref = baseline.embeddings
    if ref is None or table.embeddings is None:
        if ref is not None:
            notes.append("The baseline has image embeddings but the run has no model with an "
                         "embedding output (pass --model), so embedding drift is not tested.")
        elif table.embeddings is not None:
            notes.append("The baseline has no image embeddings (created without a model "
                         "exporting one), so embedding drift is not tested; create a new "
                         "baseline to test it.")
        return None
    rows, digest = ref
    if digest and table.embedding_model and digest != table.embedding_model:
        notes.append("The baseline's embeddings come from another model than the one given to "
                     "this run; embedding drift is not tested. Create a new baseline with "
                     "this model.")
        return None
    cur = table.embeddings[keep_rows]
    cur = cur[~np.isnan(cur).any(axis=1)]
    if len(cur) < 2 or len(rows) < 2 or cur.shape[1] != rows.shape[1]:
        return None
    result = mmd_test(rows, cur)
    keep["mmd"] = result
    # The unbiased MMD^2 dips below 0 by chance when nothing changed; as a distance, 0.
    return dict(feature=EMBEDDING_FEATURE, method="MMD", distance=max(0.0, result.mmd2),
                statistic=result.mmd2, threshold=0.0, p_value=result.p_value,
                n_baseline=result.n_baseline, n_window=result.n_window)


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
                     dtype=np.int64)  # (2, K)
    n_ref, n_cur = table.sum(axis=1)
    dist = float(np.max(np.abs(table[0] / max(n_ref, 1) - table[1] / max(n_cur, 1))))
    p: float | None = None
    stat: float | None = None
    test = method
    if method == "ChiSquared" and n_ref > 0 and n_cur > 0:
        test, stat, p = _homogeneity(table)
    return dict(feature=name, method=test, distance=dist, statistic=stat, threshold=threshold,
                p_value=p, n_baseline=int(n_ref), n_window=int(n_cur))


def _homogeneity(table: np.ndarray) -> tuple[str, float | None, float]:
    """(test name, statistic, p) for a 2 x K count table; see the module docstring."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:  # a single category cannot move
        return "Fisher exact", None, 1.0
    if table.shape[1] == 2:
        res = sps.fisher_exact(table)
        odds = float(res.statistic)
        return "Fisher exact", odds if np.isfinite(odds) else None, float(res.pvalue)
    expected = sps.contingency.expected_freq(table)
    if expected.min() >= 5:
        res = sps.chi2_contingency(table, correction=False)
        return "chi-square", float(res.statistic), float(res.pvalue)
    method = sps.MonteCarloMethod(n_resamples=MONTE_CARLO_TABLES, rng=np.random.default_rng(0))
    res = sps.chi2_contingency(table, correction=False, method=method)
    return "chi-square (Monte Carlo)", float(res.statistic), float(res.pvalue)


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
    if d.method == "MMD":
        return (f"The model's embedding of the images moved away from the baseline's: MMD^2 "
                f"{d.distance:.4f}, corrected p = {d.p_adjusted:.2g} "
                f"({d.n_window} images vs {d.n_baseline} baseline images).")
    if d.method == "KS":
        what = (f"The distribution moved away from the baseline: KS distance {d.distance:.3f} "
                f"> threshold {d.threshold:g}")
    else:
        what = (f"The mix of values moved away from the baseline: largest change in share "
                f"{d.distance:.3f} > threshold {d.threshold:g}")
    if d.p_adjusted is not None:
        what += f", corrected p = {d.p_adjusted:.2g}"
    return f"{what} ({d.n_window} records vs {d.n_baseline} baseline values)."
