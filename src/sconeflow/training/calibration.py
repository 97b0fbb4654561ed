"""Calibration: temperature scaling, expected calibration error, threshold tables.

Pure numpy, so serving and monitoring can use it without torch. Conventions:
- `logits` (N, C) float; `probs` (N, C) rows summing to 1; `labels` (N,) ints in [0, C).
- Confidence = the max class probability; an image "passes" a threshold t when
  confidence >= t (the reference's filterLowConfidence rule).
- ECE uses 15 equal-width bins on confidence, bins (lo, hi] (the first also takes 0), and
  weights each bin's |accuracy - mean confidence| by its share of images (Guo et al. 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLDS = (0.5, 0.8, 0.9, 0.93, 0.95, 0.99)
ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    picked = z[np.arange(len(labels)), np.asarray(labels)]
    return float(np.mean(log_norm - picked))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature T minimising held-out NLL of softmax(logits / T).

    NLL is convex in 1/T, hence unimodal in log T: a golden-section search on log T is
    exact to ~1e-6 and deterministic. The result is clipped to `bounds`; with perfectly
    separable logits NLL keeps falling as T -> 0, so the lower bound is what comes back.
    """
    if len(labels) == 0:
        raise ValueError("fit_temperature needs at least one labelled example")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    while hi - lo > 1e-6:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - ratio) * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return math.exp((lo + hi) / 2)


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_confidence: float  # nan when empty
    accuracy: float  # nan when empty


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS
) -> list[ReliabilityBin]:
    """Reliability-diagram data: per equal-width confidence bin, count, confidence, accuracy."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds (edges[i], edges[i+1]]; confidence 0 falls in bin 0
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    out = []
    for i in range(n_bins):
        mask = index == i
        count = int(mask.sum())
        out.append(
            ReliabilityBin(
                lower=float(edges[i]),
                upper=float(edges[i + 1]),
                count=count,
                mean_confidence=float(conf[mask].mean()) if count else math.nan,
                accuracy=float(right[mask].mean()) if count else math.nan,
            )
        )
    return out


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """ECE over `n_bins` equal-width bins on max probability (0 = perfectly calibrated)."""
    n = len(labels)
    if n == 0:
        raise ValueError("expected_calibration_error needs at least one example")
    return float(
        sum(
            b.count / n * abs(b.accuracy - b.mean_confidence)
            for b in reliability_bins(probs, labels, n_bins)
            if b.count
        )
    )


@dataclass(frozen=True)
class ThresholdRow:
    threshold: float
    passed: int  # images with confidence >= threshold
    pass_share: float  # passed / all
    accuracy_on_passed: float  # nan when none passed


def threshold_table(
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
) -> list[ThresholdRow]:
    """For each threshold: how many images pass max-prob >= t, and how many of those are right."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == np.asarray(labels)
    rows = []
    for t in thresholds:
        mask = conf >= t
        passed = int(mask.sum())
        rows.append(
            ThresholdRow(
                threshold=t,
                passed=passed,
                pass_share=passed / len(conf) if len(conf) else math.nan,
                accuracy_on_passed=float(right[mask].mean()) if passed else math.nan,
            )
        )
    return rows


def accuracy(probs_or_logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(probs_or_logits).argmax(axis=1) == np.asarray(labels)))


@dataclass(frozen=True)
class EceFloor:
    """The ECE a perfectly calibrated model would show on this many images, by simulation."""

    mean: float
    std: float
    p_at_most: dict[float, float]  # ECE level -> share of simulations at or below it


def ece_sampling_floor(
    probs: np.ndarray,
    levels: tuple[float, ...] = (0.03,),
    simulations: int = 2000,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> EceFloor:
    """How large ECE is from sampling noise alone, for these predictions on this many images.

    Each simulation keeps the predictions and draws every label from the model's own
    probabilities (so the model is perfectly calibrated by construction) and measures ECE.
    Binned ECE is biased upwards on small test sets: on 200 images with confidences like
    ours it averages ~0.037, so a measured ECE near that is all a test set this small can
    show, and a target below it is mostly a matter of luck.
    """
    probs = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probs, axis=1)
    values = np.empty(simulations)
    for i in range(simulations):
        draw = rng.random((len(probs), 1))
        labels = np.minimum((draw > cumulative).sum(axis=1), probs.shape[1] - 1)
        values[i] = expected_calibration_error(probs, labels, n_bins)
    return EceFloor(
        mean=float(values.mean()),
        std=float(values.std()),
        p_at_most={level: float(np.mean(values <= level)) for level in levels},
    )


def errors_among_most_confident(probs: np.ndarray, labels: np.ndarray, share: float) -> int:
    """Wrong predictions among the `share` most confident images: with two classes, the
    errors that pass any threshold letting that share through, whatever the temperature
    (temperature scaling keeps the order of two-class confidences, so it cannot move an
    error below the line; only a better-ranking model can)."""
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs.max(axis=1), kind="stable")[: round(share * len(probs))]
    return int((probs[order].argmax(axis=1) != np.asarray(labels)[order]).sum())
