"""Model monitoring in Model Monitor's file formats (AWS_FORMATS.md sections 4 and 5).

    capture_reader  capture JSONL from the store -> CaptureRecord; bad lines -> CaptureProblem
    features        per-record features: probabilities, confidence, margin, image statistics
    baseline        statistics.json / constraints.json / baseline_sample.json from features
    checks          constraint violations and drift tests (KS, chi-square, Holm correction)
    outcomes        ground truth (accuracy, weighted F1, confusion matrix), workflow outcomes
    runner          one monitoring execution: files under monitoring/<schedule>/<run-id>/ + db
    plots, report   PNG plots and the self-contained HTML report
    schedule        the periodic loop (hourly by default)

See docs/monitoring.md for the choice of drift tests and how to read a report.
"""

from __future__ import annotations

# The defaults `sconeflow monitor --help` shows, here in the package's light root so that
# the help needs neither numpy nor scipy. baseline.py and checks.py use these names.
DEFAULT_COMPARISON_THRESHOLD = 0.1  # least KS / L-infinity distance that counts as drift
DEFAULT_CATEGORICAL_METHOD = "ChiSquared"  # categorical drift: chi-square test + distance
DEFAULT_ALPHA = 0.01  # family-wise false alarm rate of the drift tests (Holm)
