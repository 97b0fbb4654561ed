"""The monitoring report: one self-contained HTML file plus the PNG plots it shows.

Everything is inline (plots and gallery images as base64 data URIs, CSS in a <style> tag,
no script, no font or CDN), so the file opens offline, in a mail attachment or from S3.
The top of the page answers "is it fine, and if not what do I do": status, records, the
estimated accuracy against the baseline's, and every violation in plain words with the
action it calls for.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from sconeflow.monitoring import plots
from sconeflow.monitoring.capture_reader import format_time, parse_time
from sconeflow.monitoring.checks import EMBEDDING_FEATURE, DriftTest, question_of
from sconeflow.monitoring.embeddings import project_2d
from sconeflow.monitoring.outcomes import workflow_threshold
from sconeflow.monitoring.runner import RunRecord, WindowAnalysis
from sconeflow.store import Store

GALLERY_SIZE = 12
MAX_PROBLEM_ROWS = 50

_ADVICE = {
    "brightness": "Images are {dir} than the baseline's. Check camera exposure and lighting at "
    "the source; if this is the new normal, add such images to training and retrain.",
    "contrast": "Image contrast is {dir} than the baseline's (haze, glare, washed-out or "
    "over-processed images). Check the cameras and any image processing upstream.",
    "saturation": "Colour saturation is {dir} than the baseline's (greyscale or colour-cast "
    "images). Check camera colour settings or a new client sending greyscale.",
    "sharpness": "Images are {dir} (sharpness) than the baseline's: {blur}. Check focus, motion "
    "blur and any resizing upstream before retraining.",
    "noise": "Image noise is {dir} than the baseline's. Higher: low light, sensor noise or "
    "heavy compression; lower: denoising, smoothing or darker images. Check the cameras and "
    "any processing upstream.",
    "confidence": "The model is {dir} confident than on the baseline. Look at the "
    "low-confidence gallery, label a sample (--ground-truth) to measure real accuracy.",
    "margin": "The gap between the top two classes is {dir} than on the baseline: the model "
    "hesitates more. Label a sample (--ground-truth) to measure real accuracy.",
    "predicted_class": "The mix of predicted classes changed. If the traffic really changed, "
    "update the baseline; if not, inputs changed in a way that biases the model.",
    "embedding": "What the model sees in the images changed (another camera angle, crop, "
    "compression or kind of vehicle), even where pixel statistics may not show it. Look at "
    "the lowest-confidence images, label a sample (--ground-truth) to measure accuracy, and "
    "add such images to training if they are the new normal.",
    "width": "Image sizes changed: a client sends other images. The model takes its training "
    "size; find the client and resize before invoking.",
    "format": "A new image format appears. Check the client sends what was agreed.",
}
_CHECK_ADVICE = {
    "completeness_check": "Some records lack this value: undecodable images or outputs with "
    "another number of classes. Check client and model versions; see skipped lines below.",
    "categorical_values_check": "Values the baseline never saw. If a new model or client "
    "was deployed on purpose, create a new baseline (`sconeflow monitor baseline`).",
    "data_type_check": "Values of an unexpected type. The baseline may be from another "
    "model; create a new one with `sconeflow monitor baseline`.",
    "missing_column_check": "The model's classes differ from the baseline's: a different "
    "model is deployed. Create a new baseline with `sconeflow monitor baseline`.",
    "extra_column_check": "The model's classes differ from the baseline's: a different "
    "model is deployed. Create a new baseline with `sconeflow monitor baseline`.",
    "LessThanThreshold": "The promise is broken: more passed images are wrong than promised. "
    "Raise the threshold (choose it again with `sconeflow evaluate --target-accuracy` on "
    "recent labelled images) or retrain on recent traffic; the drift findings say what "
    "changed.",
}


@dataclass
class Report:
    html: str
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _baseline_mean(analysis: WindowAnalysis, name: str) -> float | None:
    for f in analysis.baseline.statistics.get("features", []):
        if f["name"] == name and "numerical_statistics" in f:
            return float(f["numerical_statistics"]["mean"])
    return None


def advice_for(analysis: WindowAnalysis, violation: dict[str, str]) -> str:
    """What a person should do about one violation, in plain words."""
    check, name = violation["constraint_check_type"], violation["feature_name"]
    if check != "baseline_drift_check":
        return _CHECK_ADVICE.get(check, "")
    key = "confidence" if name.startswith("prob_") else "width" if name == "height" else name
    text = _ADVICE.get(key, "This feature's distribution moved; compare it in the plots below.")
    base = _baseline_mean(analysis, name)
    values = analysis.table.numeric.get(name)
    direction, blur = "different", "blurrier or sharper"
    if base is not None and values is not None and np.any(~np.isnan(values)):
        lower = float(np.nanmean(values)) < base
        direction = "lower" if lower else "higher"
        if key in ("brightness",):
            direction = "darker" if lower else "brighter"
        if key == "sharpness":
            direction, blur = ("blurrier", "less sharp") if lower else ("sharper", "more edges")
        if key in ("confidence", "margin"):
            direction = "less" if lower else "more"
    return text.format(dir=direction, blur=blur)


def render_report(
    analysis: WindowAnalysis,
    *,
    run: RunRecord | None = None,
    threshold: float | None = None,
    gallery_size: int = GALLERY_SIZE,
) -> Report:
    """Plots and the HTML page for one analysed window. `threshold` (drawn on the confidence
    plots) defaults to the one the window's executions recorded."""
    if threshold is None:
        threshold = workflow_threshold(analysis.outcomes)
    table = analysis.table
    times = [parse_time(t) for t in table.times]
    conf = table.numeric.get("confidence", np.zeros(0))
    predicted = table.strings.get("predicted_class", [])
    classes = analysis.class_names
    sample = analysis.baseline.sample
    base_counts: dict[str, dict[str, int]] = sample.get("categorical", {})
    ref_classes = base_counts.get("predicted_class", {})
    total = max(sum(ref_classes.values()), 1)
    figs: dict[str, bytes] = {}
    # Every plot is drawn even for an empty window (as a short message), so a reader always
    # finds the same sections in the same place.
    figs["confidence_over_time.png"] = plots.confidence_over_time(
        times, conf, predicted, classes, threshold)
    figs["confidence_histogram.png"] = plots.confidence_histograms(
        conf, predicted, classes, threshold)
    figs["class_mix.png"] = plots.class_mix(
        times, predicted, classes, {c: n / total for c, n in ref_classes.items()})
    figs["feature_drift.png"] = plots.feature_drift(
        analysis.checks.drift,
        {k: np.asarray(v["values"], dtype=float) for k, v in sample.get("numeric", {}).items()},
        {k: v[~np.isnan(v)] for k, v in table.numeric.items()},
        base_counts,
        {k: _count(v) for k, v in table.strings.items()},
    )
    figs["workflow_outcomes.png"] = plots.workflow_outcomes(analysis.outcomes)
    if analysis.promise is not None and analysis.promise_result is not None:
        figs["promise.png"] = plots.promise_over_time(
            times, conf, predicted, analysis.truth, analysis.promise)
    emb = next((d for d in analysis.checks.drift if d.feature == EMBEDDING_FEATURE), None)
    ref = analysis.baseline.embeddings
    if emb is not None and ref is not None and analysis.table.embeddings is not None:
        base_2d, win_2d, explained = project_2d(ref[0], analysis.table.embeddings)
        figs["embedding_drift.png"] = plots.embedding_drift(
            emb, base_2d, win_2d, explained, analysis.extras["mmd"])
    for d in analysis.checks.drift:
        if d.method == "MMD":
            continue
        numeric = d.method == "KS"
        figs[_panel_name(d.feature)] = plots.drift_panel(
            d,
            np.asarray(sample["numeric"][d.feature]["values"], dtype=float) if numeric
            else base_counts.get(d.feature, {}),
            table.numeric[d.feature][~np.isnan(table.numeric[d.feature])] if numeric
            else _count(table.strings.get(d.feature, [])),
        )
    page = _page(analysis, run, threshold, figs, _gallery(analysis, gallery_size))
    return Report(page, figs)


def _anchor(feature: str) -> str:
    """The HTML id of a feature's plot: letters, digits, - and _ only."""
    return "drift-" + re.sub(r"[^A-Za-z0-9_-]", "-", feature)


def _panel_name(feature: str) -> str:
    return f"{_anchor(feature)}.png"


def _count(values: list[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        if v is not None:
            out[v] = out.get(v, 0) + 1
    return out


def _gallery(analysis: WindowAnalysis, size: int) -> str:
    conf = analysis.table.numeric.get("confidence")
    if conf is None or not np.any(~np.isnan(conf)):
        return "<p>No images with a usable prediction in this window.</p>"
    order = np.argsort(np.where(np.isnan(conf), np.inf, conf))[:size]
    cells = []
    for i in order:
        if np.isnan(conf[i]):
            continue
        rec = analysis.capture.records[int(i)]
        probs = ", ".join(
            f"{c} {p:.2f}" for c, p in zip(analysis.class_names, rec.probabilities, strict=False)
        )
        mime = "image/jpeg" if rec.content_type == "image/jpeg" else "image/png"
        pred = analysis.table.strings["predicted_class"][int(i)]
        outcome = (analysis.table.strings.get("workflow_status") or [None] * (i + 1))[int(i)]
        shown_outcome = f"<br>workflow: {_esc(outcome)}" if outcome else ""
        true = analysis.truth[int(i)] if analysis.truth else None
        if true is not None:
            mark = "right" if true == pred else "WRONG"
            shown_outcome += f"<br>true: {_esc(true)} ({mark})"
        cells.append(
            f'<figure><img class="thumb" alt="{_esc(rec.event_id)}" '
            f'src="{_data_uri(rec.image, mime)}"><figcaption><b>{_esc(pred)}</b> '
            f"{conf[i]:.2f}<br><small>{_esc(probs)}<br>{_esc(format_time(rec.inference_time))}"
            f"<br>{_esc(rec.inference_id or rec.event_id[:8])}{shown_outcome}</small>"
            "</figcaption></figure>"
        )
    return f'<div class="gallery">{"".join(cells)}</div>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:16px 24px;color:#222}h1{margin:.2em 0}h2{border-bottom:1px solid #ddd;padding-bottom:4px;
margin-top:1.6em}table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ddd;
padding:4px 8px;text-align:left}th{background:#f4f4f4}.status{display:inline-block;padding:4px 12px;
border-radius:4px;color:#fff;font-weight:600}.Completed{background:#2e7d32}
.CompletedWithViolations{background:#c62828}.Failed{background:#555}.cards{display:flex;
flex-wrap:wrap;gap:12px;margin:12px 0}.card{border:1px solid #ddd;border-radius:6px;
padding:8px 14px;min-width:140px}.card .v{font-size:22px;font-weight:600}
.card .l{font-size:12px;color:#666}
ul.violations li{margin-bottom:8px}.advice{color:#555}img.plot{max-width:100%;display:block;
margin:8px 0}.gallery{display:flex;flex-wrap:wrap;gap:10px}.gallery figure{margin:0;width:130px;
font-size:12px;overflow-wrap:anywhere}
img.thumb{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ccc}
.drift{color:#c62828;font-weight:600}.muted{color:#666}
table.drift-table td{vertical-align:top}table.drift-table small{color:#555}
.panels{display:flex;flex-wrap:wrap;gap:8px}.panels figure{margin:0;width:340px;font-size:12px}
img.panel{width:340px;display:block}:target{outline:3px solid #f58518}
"""


def _card(value: str, label: str) -> str:
    return (f'<div class="card"><div class="v">{_esc(value)}</div>'
            f'<div class="l">{_esc(label)}</div></div>')


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _page(
    analysis: WindowAnalysis, run: RunRecord | None, threshold: float, figs: dict[str, bytes],
    gallery: str,
) -> str:
    status = run.status if run else analysis.status
    checks = analysis.checks
    conf = analysis.table.numeric.get("confidence", np.zeros(0))
    ok = conf[~np.isnan(conf)] if len(conf) else conf
    below = f"{np.mean(ok < threshold):.1%}" if ok.size else "n/a"
    window = (f"{format_time(analysis.since) if analysis.since else 'start'} to "
              f"{format_time(analysis.until) if analysis.until else 'now'}")
    cards = [
        _card(str(len(analysis.table)), "records in window"),
        _card(_pct(analysis.est_accuracy), "est. accuracy (mean confidence)"),
        _card(_pct(analysis.baseline.est_accuracy), "baseline est. accuracy"),
        _card(below, f"below threshold {threshold:g}"),
        _card(str(len(checks.violations)), "violations"),
        _card(str(len(analysis.problems)), "skipped capture lines"),
    ]
    if analysis.quality:
        cards.insert(2, _card(_pct(analysis.quality["accuracy"]["value"]),
                              "accuracy (ground truth)"))
        cards.insert(3, _card(f"{analysis.quality['weighted_f1']['value']:.3f}",
                              "weighted F1 (ground truth)"))
    if checks.violations:
        items = "".join(
            f"<li><b>{_esc(v['feature_name'])}</b> ({_esc(v['constraint_check_type'])}): "
            f"{_esc(v['description'])}<br><span class=\"advice\">What to do: "
            f"{_esc(advice_for(analysis, v))}</span></li>"
            for v in checks.violations
        )
        violations = f'<ul class="violations">{items}</ul>'
    else:
        violations = "<p>No violations: the window matches the baseline.</p>"
    notes = "".join(f"<li>{_esc(n)}</li>" for n in checks.notes)
    titles = {
        "confidence_over_time.png": "Confidence of recent inferences over time",
        "confidence_histogram.png": "Confidence per predicted class",
        "class_mix.png": "Class mix over time",
        "feature_drift.png": "Drift against the baseline",
        "workflow_outcomes.png": "Workflow executions",
    }

    def plot(name: str, anchor: str = "") -> str:
        ident = f' id="{anchor}"' if anchor else ""
        return (f'<img class="plot"{ident} alt="{_esc(name)}" '
                f'src="{_data_uri(figs[name])}">')

    sections = ""
    for name, title in titles.items():
        sections += f"<h2>{_esc(title)}</h2>"
        if name == "feature_drift.png":
            sections += _drift_table(analysis) + plot(name)
            if "embedding_drift.png" in figs:
                sections += (f'<h3 id="{_anchor(EMBEDDING_FEATURE)}">The model\'s embedding of '
                             "the images</h3>" + plot("embedding_drift.png"))
            sections += _panels(analysis, figs)
        else:
            sections += plot(name)
        if name == "class_mix.png":
            sections += _promise_section(analysis, figs)
    run_line = f"run <code>{_esc(run.run_id)}</code> ({_esc(run.prefix)}) · " if run else ""
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Monitoring report: {_esc(analysis.endpoint)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Model monitoring: {_esc(analysis.endpoint)}</h1>"
        f'<p><span class="status {_esc(status)}">{_esc(status)}</span> '
        f'<span class="muted">{run_line}window {_esc(window)} · generated '
        f"{_esc(format_time(datetime.now().astimezone()))}</span></p>"
        f'<div class="cards">{"".join(cards)}</div>'
        f"<h2>Violations</h2>{violations}"
        + (f"<h3>Notes</h3><ul class=\"muted\">{notes}</ul>" if notes else "")
        + _quality_table(analysis)
        + sections
        + f"<h2>Lowest-confidence images</h2>{gallery}"
        + _problems_table(analysis)
        + "</body></html>"
    )


def _statistic(d: DriftTest) -> str:
    if d.statistic is None:
        return ""
    names = {"KS": "D", "Fisher exact": "odds ratio", "MMD": "MMD\u00b2"}
    name = names.get(d.method, "\u03c7\u00b2")
    return f"{name} = {d.statistic:.4g}"


def _drift_table(analysis: WindowAnalysis) -> str:
    """Every test with the rule that decided it; each feature links to its plot."""
    drift = analysis.checks.drift
    if not drift:
        return ""
    rule = ("A feature drifts when its corrected p-value is below alpha <b>and</b> its "
            "distance is above the floor (MMD: p alone). p is corrected for every test in "
            "the run (Holm within each question, Bonferroni across the questions asked), "
            "so a run raises a false alarm with probability at most alpha.")
    rows = "".join(
        f"<tr><td><a href=\"#{_anchor(d.feature)}\">{_esc(d.feature)}</a></td>"
        f"<td>{_esc(question_of(d.feature))}</td>"
        f"<td>{_esc(d.method)}<br><small>{_esc(_statistic(d))}</small></td>"
        f"<td>{d.n_window} / {d.n_baseline}</td>"
        f"<td>{'' if d.p_value is None else f'{d.p_value:.2g}'}</td>"
        f"<td>{'' if d.p_adjusted is None else f'{d.p_adjusted:.2g}'}</td>"
        f"<td>{d.alpha:g}</td><td>{d.distance:.3g}</td>"
        f"<td>{'none' if d.method == 'MMD' else f'{d.threshold:g}'}</td>"
        f"<td><small>{_esc(d.decided_by)}</small></td>"
        f"<td class=\"{'drift' if d.drifted else ''}\">{'DRIFT' if d.drifted else 'ok'}</td></tr>"
        for d in sorted(drift, key=lambda d: (not d.drifted, d.p_adjusted or 1.0, -d.distance))
    )
    return (f'<p class="muted">{rule}</p><table class="drift-table"><tr><th>feature</th>'
            "<th>question</th><th>test</th><th>n window / baseline</th><th>p</th>"
            "<th>corrected p</th><th>alpha</th><th>distance</th><th>floor</th>"
            f"<th>decided by</th><th>verdict</th></tr>{rows}</table>")


def _panels(analysis: WindowAnalysis, figs: dict[str, bytes]) -> str:
    """One small plot per tested feature, each the target of its table row's link."""
    cells = []
    for d in analysis.checks.drift:
        name = _panel_name(d.feature)
        if name not in figs:
            continue
        cells.append(
            f'<figure id="{_anchor(d.feature)}"><img class="panel" alt="{_esc(name)}" '
            f'src="{_data_uri(figs[name])}"><figcaption>{_esc(d.decided_by)}</figcaption>'
            "</figure>")
    if not cells:
        return ""
    return f'<h3>Every test, feature by feature</h3><div class="panels">{"".join(cells)}</div>'


def _promise_section(analysis: WindowAnalysis, figs: dict[str, bytes]) -> str:
    """The model's promise (model.json `selective`), checked against ground truth."""
    p, r = analysis.promise, analysis.promise_result
    head = "<h2>The promise: accuracy of the images that pass</h2>"
    if p is None:
        return (head + "<p>The model states no promise: its model.json has no "
                "<code>selective</code> entry (choose a threshold for a target with "
                "<code>sconeflow evaluate --target-accuracy 0.99 ... --save</code>).</p>")
    kind = "guaranteed" if p.guaranteed else "not guaranteed where it was chosen (empirical)"
    text = (f"<p>Threshold <b>{p.threshold:.4f}</b> for a selective accuracy of "
            f"<b>{p.target_accuracy:.1%}</b> ({kind}; {_esc(p.source)}).</p>")
    if r is None:
        return head + text + ("<p>No ground truth for this window, so the promise is not "
                              "checked (pass <code>--ground-truth PREFIX</code>).</p>")
    acc = "n/a" if r.selective_accuracy is None else f"{r.selective_accuracy:.1%}"
    if r.broken:
        verdict = (f'the {p.confidence:.0%} upper bound {r.upper_bound:.1%} is below the '
                   'target: promise <span class="drift">BROKEN</span>')
    else:  # an observed rate below the target is not yet evidence that the promise is broken
        below = (r.selective_accuracy is not None
                 and r.selective_accuracy < p.target_accuracy)  # fmt: skip
        verdict = (f"the {p.confidence:.0%} upper bound {r.upper_bound:.1%} still reaches the "
                   + ("target, so this window is too small to say it is broken: promise not "
                      "broken (watch it)" if below else "target: promise kept"))
    text += (f"<p>{r.passed} of {r.records} inferences passed ({(r.pass_rate or 0):.0%}); "
             f"{r.labelled_passed} of them are labelled and {r.correct} right ({acc}); "
             f"{verdict}.</p>")
    return head + text + (f'<img class="plot" alt="promise.png" '
                          f'src="{_data_uri(figs["promise.png"])}">' if "promise.png" in figs
                          else "")


def _quality_table(analysis: WindowAnalysis) -> str:
    q = analysis.quality
    if not q:
        return ""
    classes = list(q["confusion_matrix"])
    head = "".join(f"<th>predicted {_esc(c)}</th>" for c in classes)
    rows = "".join(
        f"<tr><th>true {_esc(t)}</th>"
        + "".join(f"<td>{q['confusion_matrix'][t][p]}</td>" for p in classes) + "</tr>"
        for t in classes
    )
    return (f"<h2>Model quality (ground truth)</h2><p>accuracy {q['accuracy']['value']:.3f} "
            f"± {q['accuracy']['standard_deviation']:.3f}, weighted F1 "
            f"{q['weighted_f1']['value']:.3f}</p><table><tr><th></th>{head}</tr>{rows}</table>")


def _problems_table(analysis: WindowAnalysis) -> str:
    problems = analysis.problems
    if not problems:
        return "<h2>Skipped capture lines</h2><p>None: every line was a usable record.</p>"
    rows = "".join(
        f"<tr><td>{_esc(p.source)}</td><td>{p.line}</td><td>{_esc(p.reason)}</td></tr>"
        for p in problems[:MAX_PROBLEM_ROWS]
    )
    more = (f"<p class=\"muted\">and {len(problems) - MAX_PROBLEM_ROWS} more (summary.json)</p>"
            if len(problems) > MAX_PROBLEM_ROWS else "")
    return (f"<h2>Skipped capture lines ({len(problems)})</h2><table><tr><th>file</th>"
            f"<th>line</th><th>reason</th></tr>{rows}</table>{more}")


def write_report(store: Store, bucket: str, prefix: str, report: Report) -> list[str]:
    """report.html and the plots under `prefix` (a run's folder); returns the keys."""
    keys = []
    for name, data in [("report.html", report.html.encode()), *report.plots.items()]:
        store.put(bucket, prefix + name, data)
        keys.append(prefix + name)
    return keys
