"""Selective classification: how many images may pass a confidence threshold under a promise.

The business promise is "of the images that pass, at most 1 in 100 is routed wrongly":
a target *selective accuracy* (accuracy among the images with confidence >= threshold).
Lowering the threshold lets more images pass (coverage) and lets more errors through
(selective risk = 1 - selective accuracy). This module computes

    risk_coverage      the risk-coverage curve over every distinct threshold, and its area
                       (AURC, Geifman et al. 2019; lower is better; `excess_aurc` subtracts
                       the best AURC any ranking could reach at this accuracy)
    select_threshold   the lowest threshold whose selective accuracy is >= target with
                       confidence 1 - delta, by SGR (selective classification with
                       guaranteed risk, Geifman & El-Yaniv 2017, Algorithm 1)
    clopper_pearson    exact one-sided binomial bounds (the bound SGR inverts)

SGR bisects over the sorted confidences for ceil(log2 m) steps; at each step it bounds the
risk of the images passing the candidate threshold with the one-sided Clopper-Pearson upper
bound at level delta / ceil(log2 m) (a union bound over the steps), and keeps going lower
while that bound is under the target risk. Whatever threshold it returns, with probability
at least 1 - delta over the draw of the m labelled images, the selective risk on new images
from the same distribution is at most the bound it reports. That guarantee needs labelled
images the model was not trained on, and enough of them: with no error at all among n
passing images the bound is 1 - (delta/k)^(1/n), so 99% at 95% confidence needs n >= 505
passing images when m is 200 (k = 8). When no threshold can be guaranteed, the result says
so (`guaranteed` False) and carries the empirical threshold instead, with its own
(uncorrected) lower bound, so a reader sees both what the data suggests and what it proves.

Pure numpy plus scipy's beta quantile; confidences are max class probabilities and an image
passes when confidence >= threshold (filterLowConfidence's rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_CONFIDENCE = 0.95  # 1 - delta: the probability that the stated bound holds


def clopper_pearson_upper(failures: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) upper bound on a binomial rate: `failures` of `n` observed.

    The b solving P(Binomial(n, b) <= failures) = delta, i.e. the beta quantile
    Beta(1 - delta; failures + 1, n - failures); 1 when every trial failed or n == 0.
    """
    from scipy.stats import beta

    if n <= 0 or failures >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, failures + 1, n - failures))


def clopper_pearson_lower(successes: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) lower bound on a binomial rate: `successes` of `n` observed."""
    return 1.0 - clopper_pearson_upper(n - successes, n, delta)


@dataclass(frozen=True)
class RiskCoverage:
    """The curve at every distinct threshold, most confident first."""

    thresholds: np.ndarray  # (T,) descending distinct confidences
    coverage: np.ndarray  # (T,) share of images with confidence >= threshold
    risk: np.ndarray  # (T,) error rate among those images
    aurc: float  # area under the curve (mean risk over coverage)
    excess_aurc: float  # aurc minus the best possible at the same overall accuracy


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    """Risk-coverage curve of `confidence` (N,) with `correct` (N,) booleans."""
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    n = conf.size
    if n == 0:
        raise ValueError("risk_coverage needs at least one image")
    order = np.argsort(-conf, kind="stable")
    conf, right = conf[order], right[order]
    errors = np.cumsum(~right)  # errors among the k most confident, k = 1..N
    # Ties pass together, so the curve has one point per distinct confidence: the last
    # index of each run of equal values.
    last = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True])
    passed = last + 1
    risk = errors[last] / passed
    coverage = passed / n
    widths = np.diff(np.r_[0.0, coverage])
    aurc = float(np.sum(risk * widths))
    r = float(np.mean(~right))
    # The best ranking puts every error last: risk 0 until coverage 1 - r, then the
    # errors; its area is r + (1 - r) ln(1 - r) (Geifman et al. 2019, eq. 3).
    best = r + (1 - r) * math.log(1 - r) if r < 1 else 1.0
    return RiskCoverage(conf[last], coverage, risk, aurc, aurc - best)


@dataclass(frozen=True)
class ClassCoverage:
    name: str
    images: int  # images of this true class
    passed: int
    coverage: float  # passed / images
    accuracy_on_passed: float | None  # None when none passed


@dataclass(frozen=True)
class SelectiveThreshold:
    """A threshold chosen for a target selective accuracy, and what it is known to give.

    guaranteed: SGR found it; with probability >= confidence the selective accuracy on new
    images is >= accuracy_lower_bound >= target_accuracy. Otherwise the threshold is the
    empirical one (lowest threshold whose observed selective accuracy reaches the target)
    and accuracy_lower_bound is its single-threshold Clopper-Pearson bound, below target.
    """

    target_accuracy: float
    confidence: float
    threshold: float
    guaranteed: bool
    method: str
    images: int
    passed: int
    coverage: float
    selective_accuracy: float | None  # observed among the passed; None if none passed
    accuracy_lower_bound: float  # at `confidence` (SGR's corrected bound when guaranteed)
    images_needed: int  # least passing images, all right, for SGR to certify the target
    per_class: list[ClassCoverage] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_threshold(
    confidence: np.ndarray,
    correct: np.ndarray,
    target_accuracy: float,
    *,
    confidence_level: float = DEFAULT_CONFIDENCE,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] = (),
) -> SelectiveThreshold:
    """The threshold for `target_accuracy` on these labelled images (see the module doc).

    `labels` (true class indices) and `class_names` add the coverage per true class.
    """
    if not 0.0 < target_accuracy < 1.0:
        raise ValueError(f"target accuracy {target_accuracy!r} must be between 0 and 1 "
                         "(exclusive), e.g. 0.99")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence {confidence_level!r} must be between 0 and 1 "
                         "(exclusive), e.g. 0.95")
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    m = conf.size
    if m == 0:
        raise ValueError("select_threshold needs at least one labelled image")
    delta = 1.0 - confidence_level
    target_risk = 1.0 - target_accuracy
    steps = max(1, math.ceil(math.log2(m)))
    found = _sgr(conf, right, target_risk, delta, steps)
    needed = math.ceil(math.log(delta / steps) / math.log(target_accuracy))
    if found is not None:
        threshold, bound = found
        method = (f"SGR (Geifman & El-Yaniv 2017): {steps} bisection steps, one-sided "
                  f"Clopper-Pearson at delta {delta:g}/{steps} each")
        guaranteed, lower = True, 1.0 - bound
    else:
        threshold = _empirical(conf, right, target_accuracy)
        mask = conf >= threshold
        method = ("empirical: the lowest threshold whose observed selective accuracy reaches "
                  "the target; no threshold can be guaranteed on this many images")
        guaranteed = False
        lower = clopper_pearson_lower(int(right[mask].sum()), int(mask.sum()), delta)
    mask = conf >= threshold
    passed = int(mask.sum())
    per_class = []
    if labels is not None and class_names:
        y = np.asarray(labels)
        for k, name in enumerate(class_names):
            own = y == k
            ok = own & mask
            per_class.append(ClassCoverage(
                name, int(own.sum()), int(ok.sum()),
                float(ok.sum() / own.sum()) if own.any() else 0.0,
                float(right[ok].mean()) if ok.any() else None,
            ))
    return SelectiveThreshold(
        target_accuracy=target_accuracy, confidence=confidence_level,
        threshold=float(threshold), guaranteed=guaranteed, method=method, images=m,
        passed=passed, coverage=passed / m,
        selective_accuracy=float(right[mask].mean()) if passed else None,
        accuracy_lower_bound=float(lower), images_needed=needed, per_class=per_class,
    )


def _sgr(conf: np.ndarray, right: np.ndarray, target_risk: float, delta: float,
         steps: int) -> tuple[float, float] | None:
    """Geifman & El-Yaniv's Algorithm 1: (threshold, risk bound), or None if no step's
    bound fell below the target risk. Candidates are the sorted confidences; z is the
    1-based rank in ascending order, and threshold conf_(z) passes ranks z..m."""
    ascending = np.sort(conf)
    m = ascending.size
    z_min, z_max = 1, m
    best: tuple[float, float] | None = None
    for _ in range(steps):
        z = math.ceil((z_min + z_max) / 2)
        theta = float(ascending[z - 1])
        mask = conf >= theta
        n, errors = int(mask.sum()), int((~right[mask]).sum())
        bound = clopper_pearson_upper(errors, n, delta / steps)
        if bound < target_risk:
            # Every tested step is covered by the union bound, so keeping the lowest
            # passing threshold (the most coverage) is as valid as keeping the last.
            if best is None or theta < best[0]:
                best = (theta, bound)
            z_max = z
        else:
            z_min = z
    return best


def _empirical(conf: np.ndarray, right: np.ndarray, target: float) -> float:
    """The lowest distinct confidence at which the observed selective accuracy >= target;
    above every confidence (nothing passes) when even the most confident image is wrong."""
    curve = risk_coverage(conf, right)
    ok = np.flatnonzero(1.0 - curve.risk >= target - 1e-12)
    if ok.size == 0:
        return math.nextafter(float(conf.max()), math.inf)
    return float(curve.thresholds[ok[-1]])


def promise_check(passed: int, correct: int, target_accuracy: float,
                  confidence_level: float = DEFAULT_CONFIDENCE) -> tuple[bool, float, float]:
    """In production: is the promise broken? (broken, observed accuracy, upper bound).

    Broken when even the one-sided (confidence_level) Clopper-Pearson *upper* bound of the
    selective accuracy of the labelled passed images is below the target: a level-delta
    test of "selective accuracy >= target", so a window that keeps the promise is flagged
    with probability at most delta.
    """
    if passed == 0:
        return False, math.nan, 1.0
    upper = clopper_pearson_upper(correct, passed, 1.0 - confidence_level)
    return upper < target_accuracy, correct / passed, upper
