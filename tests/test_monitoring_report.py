"""The HTML report: self-contained, every plot present, and it renders in a real browser
(headless Chromium via Playwright) with every image loaded and no console error."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from sconeflow.config import Settings
from sconeflow.db import connect
from sconeflow.monitoring.baseline import baseline_prefix, build_baseline, save_baseline
from sconeflow.monitoring.capture_reader import CaptureRecord, capture_key
from sconeflow.monitoring.features import compute_features
from sconeflow.monitoring.outcomes import WorkflowOutcome
from sconeflow.monitoring.report import Report, advice_for, render_report, write_report
from sconeflow.monitoring.runner import run_monitoring
from sconeflow.monitoring.simulate import darken, decode_pngs, encode_pngs, write_capture
from sconeflow.store import open_store
from test_monitoring_support import CLASSES, fake_probs, staged_split

T0 = datetime(2025, 8, 22, 4, 0, 0, tzinfo=UTC)
CHROMIUM = "/usr/bin/chromium"
PLOTS = {"confidence_over_time.png", "confidence_histogram.png", "class_mix.png",
         "feature_drift.png", "workflow_outcomes.png"}


@pytest.fixture(scope="module")
def report(staged_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A run over drifting traffic (darker images, 90/10 class mix), bad lines, outcomes."""
    settings = Settings(home=tmp_path_factory.mktemp("rep"), store_uri="")
    settings = settings.with_overrides(store_uri=(settings.home / "store").as_uri())
    store = open_store(settings)
    pngs, labels = staged_split(staged_home, "train")
    recs = [CaptureRecord(f"b{i}", T0, "image/png", p, tuple(q))
            for i, (p, q) in enumerate(zip(pngs, fake_probs(labels), strict=True))]
    save_baseline(store, settings.bucket, baseline_prefix("ep-monitor"),
                  build_baseline(compute_features(recs, CLASSES)))
    test_pngs, test_labels = staged_split(staged_home, "test")
    idx = np.concatenate([np.flatnonzero(test_labels == 0)[:90],
                          np.flatnonzero(test_labels == 1)[:10]])
    images = decode_pngs([test_pngs[i] for i in idx])
    images[50:] = darken(images[50:], 0.45)  # the second half of the window goes dark
    write_capture(store, settings.bucket, "ep", encode_pngs(images),
                  fake_probs(test_labels[idx], 3, accuracy=0.7), start=T0,
                  interval=timedelta(seconds=30))
    store.put(settings.bucket, capture_key("ep", T0 + timedelta(minutes=5)),
              b'{"captureData": "garbage"}\nnot json at all\n')
    rng = np.random.default_rng(0)
    outcomes = [WorkflowOutcome(T0 + timedelta(seconds=30 * i),
                                "SUCCEEDED" if rng.random() < 0.7 else "FAILED", f"x{i}",
                                threshold=0.88)
                for i in range(100)]
    record, analysis = run_monitoring(
        store, settings.bucket, connect(settings.db_path), endpoint="ep",
        schedule="ep-monitor", since=T0, until=T0 + timedelta(hours=1), outcomes=outcomes)
    assert record.status == "CompletedWithViolations"
    rendered = render_report(analysis, run=record)
    write_report(store, settings.bucket, record.prefix, rendered)
    assert store.exists(settings.bucket, record.prefix + "report.html")
    return rendered


def test_report_is_self_contained_and_actionable(report: Report) -> None:
    html = report.html
    assert set(report.plots) >= PLOTS
    assert {"drift-brightness.png", "drift-predicted_class.png"} <= set(report.plots)
    assert all(png.startswith(b"\x89PNG") for png in report.plots.values())
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == len(report.plots) + 12  # plots + the low-confidence gallery
    assert all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r"(href|src)=\"(https?:)?//", html) and "<script" not in html
    assert "CompletedWithViolations" in html
    assert "brightness" in html and "What to do: Images are darker" in html
    assert "predicted_class" in html and "Skipped capture lines (2)" in html
    assert "est. accuracy (mean confidence)" in html
    assert "below threshold 0.88" in html  # the executions' recorded threshold


def test_advice_names_the_direction() -> None:
    class A:  # the two attributes advice_for reads
        baseline = type("B", (), {"statistics": {"features": [
            {"name": "sharpness", "numerical_statistics": {"mean": 100.0}}]}})()
        table = type("T", (), {"numeric": {"sharpness": np.array([10.0, 20.0])}})()

    v = {"feature_name": "sharpness", "constraint_check_type": "baseline_drift_check",
         "description": ""}
    assert advice_for(A(), v).startswith("Images are blurrier")  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
                    reason="Debian chromium not installed (apt-get install chromium)")
def test_report_renders_in_a_real_browser(report: Report, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    page_file = tmp_path / "report.html"
    page_file.write_text(report.html, encoding="utf-8")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
            viewport={"width": 1200, "height": 900},
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
                    else errors.append(f"external request {r.url}"))
            page.goto(page_file.as_uri(), wait_until="load")
            widths = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            context.close()
    assert len(widths) == len(report.plots) + 12
    assert all(complete and width > 0 for _, complete, width in widths), widths
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_empty_window_still_renders_every_section(staged_home: Settings,
                                                  tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, store_uri=(tmp_path / "store").as_uri())
    store = open_store(settings)
    pngs, labels = staged_split(staged_home, "test")
    recs = [CaptureRecord(f"b{i}", T0, "image/png", p, tuple(q))
            for i, (p, q) in enumerate(zip(pngs, fake_probs(labels), strict=True))]
    save_baseline(store, settings.bucket, baseline_prefix("ep-monitor"),
                  build_baseline(compute_features(recs, CLASSES)))
    record, analysis = run_monitoring(store, settings.bucket, connect(settings.db_path),
                                      endpoint="ep", schedule="ep-monitor", since=T0,
                                      until=T0 + timedelta(hours=1))
    assert record.status == "Completed" and len(analysis.table) == 0
    rendered = render_report(analysis, run=record)
    assert set(rendered.plots) == PLOTS
    assert "The window has no records" in rendered.html


@pytest.mark.parametrize(
    ("observed", "upper", "broken", "says"),
    [(0.962, 0.993, False, "too small to say it is broken: promise not broken (watch it)"),
     (1.0, 1.0, False, "still reaches the target: promise kept"),
     (0.80, 0.90, True, 'is below the target: promise <span class="drift">BROKEN</span>')],
)  # fmt: skip
def test_the_promise_verdict_never_reads_as_kept_below_the_target(
    observed: float, upper: float, broken: bool, says: str
) -> None:
    from types import SimpleNamespace

    from sconeflow.monitoring.report import _promise_section

    promise = SimpleNamespace(threshold=0.9791, target_accuracy=0.99, guaranteed=False,
                              source="chosen by the pipeline", confidence=0.95)  # fmt: skip
    result = SimpleNamespace(broken=broken, selective_accuracy=observed, passed=52, records=100,
                             pass_rate=0.52, labelled_passed=52, correct=round(52 * observed),
                             upper_bound=upper)  # fmt: skip
    html = _promise_section(SimpleNamespace(promise=promise, promise_result=result), {})  # type: ignore[arg-type]
    assert says in html
