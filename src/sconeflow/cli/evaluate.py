"""`sconeflow evaluate`: a model artifact over a staged split, as the endpoint sees it;
with --target-accuracy, the confidence threshold that keeps that promise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sconeflow.cli.common import Context, console, json_option, pass_context, print_json
from sconeflow.errors import ConfigError, DataError
from sconeflow.progress import RichProgress
from sconeflow.store import open_store

# The split a threshold is fitted on when none is named: one the model never trained on.
# data/test only when asked by name, since fitting on it spends the one unbiased estimate.
THRESHOLD_SPLIT = "validation"


@click.command()
@click.option("--model", required=True, help="Training job name, model.tar.gz or model folder.")
@click.option("--split", default=None, help="Staged split to evaluate on (default test; with "
              f"--target-accuracy, {THRESHOLD_SPLIT}: data the model did not train on).")
@click.option("--target-accuracy", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Choose the lowest confidence threshold whose selective accuracy (accuracy "
              "of the images that pass) is at least this, e.g. 0.99 = at most 1 in 100 "
              "passed images wrong.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.95, show_default=True,
              help="With --target-accuracy: the probability that the stated bound holds.")
@click.option("--save", is_flag=True, help="With --target-accuracy: store the threshold and "
              "its guarantee in the model's model.json (`selective`), which `workflow run "
              "--threshold model` and THRESHOLD=model read.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the plots (default: <home>/evaluations/...).",
)
@json_option
@pass_context
def evaluate(ctx: Context, model: str, split: str | None, target_accuracy: float | None,
             confidence: float, save: bool, out: Path | None, as_json: bool) -> None:
    """Accuracy, confusion matrix, calibration (ECE), the confidence-threshold table and the
    risk-coverage curve (AURC), computed with the endpoint's own preprocessing and runtime;
    with --target-accuracy, the threshold that keeps it (SGR, Clopper-Pearson)."""
    from sconeflow.evaluation import (
        evaluate_model,
        plot_confusion,
        plot_reliability,
        plot_risk_coverage,
        save_selective,
        selective_entry,
    )

    if save and target_accuracy is None:
        raise click.UsageError("--save stores a chosen threshold; give --target-accuracy too")
    settings = ctx.settings
    store = open_store(settings)
    if split is None:
        split = "test" if target_accuracy is None else THRESHOLD_SPLIT
        if split == THRESHOLD_SPLIT and not store.exists(settings.bucket, f"data/{split}.lst"):
            raise DataError(
                f"a threshold must be chosen on labelled images the model did not train on, "
                f"and no data/{THRESHOLD_SPLIT}.lst is staged; pass --split test to choose it "
                "on the test split (its accuracy is then no longer an unbiased estimate), or "
                f"stage a {THRESHOLD_SPLIT} split"
            )
    with RichProgress() as progress:
        ev = evaluate_model(settings, store, model, split, progress=progress)
    chosen = ev.selective(target_accuracy, confidence) if target_accuracy is not None else None
    out = out or settings.home / "evaluations" / f"{Path(model).name}-{split}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        plots = {"reliability.png": plot_reliability(ev), "confusion.png": plot_confusion(ev),
                 "risk_coverage.png": plot_risk_coverage(ev, chosen)}  # fmt: skip
        for name, data in plots.items():
            (out / name).write_bytes(data)
    except OSError as err:
        raise ConfigError(
            f"--out {str(out)[:200]!r}: cannot write the plots there ({err.strerror}); pass "
            "--out with a folder you can write"
        ) from err
    saved = None
    entry = selective_entry(ev, chosen) if chosen is not None else None
    if save and entry is not None:
        saved = save_selective(settings, store, model, entry)
    if as_json:
        doc: dict[str, Any] = {**ev.to_dict(), "plots": [str(out / n) for n in plots]}
        if entry is not None:
            doc["selective"] = entry
            doc["saved_to"] = saved
        print_json(doc)
        return
    _print_text(ev, chosen, split, saved, [out / n for n in plots])


def _print_text(ev: Any, chosen: Any, split: str, saved: str | None, plots: list[Path]) -> None:
    from rich.table import Table

    console.print(
        f"[bold]{ev.model}[/] on {split} ({len(ev.labels)} images): accuracy "
        f"[bold]{ev.accuracy:.3f}[/], ECE {ev.ece:.3f} (15 bins), AURC "
        f"{ev.risk_coverage.aurc:.4f} (excess {ev.risk_coverage.excess_aurc:.4f})"
    )
    floor = ev.ece_floor
    console.print(
        f"  a perfectly calibrated model would show ECE {floor.mean:.3f} +- {floor.std:.3f} "
        f"on {len(ev.labels)} images (binned ECE is biased up on small sets)"
    )
    cm = Table(title="Confusion matrix", title_justify="left")
    cm.add_column("true \\ predicted")
    for c in ev.classes:
        cm.add_column(c, justify="right")
    for name, row in zip(ev.classes, ev.confusion.tolist(), strict=True):
        cm.add_row(name, *map(str, row))
    console.print(cm)
    th = Table(title="Confidence thresholds (the reference's: 0.93)", title_justify="left")
    for col in ("threshold", "pass", "share", "accuracy of passed"):
        th.add_column(col, justify="right")
    for r in ev.thresholds():
        acc = "-" if r.passed == 0 else f"{r.accuracy_on_passed:.1%}"
        th.add_row(f"{r.threshold:.2f}", str(r.passed), f"{r.pass_share:.0%}", acc)
    console.print(th)
    if chosen is not None:
        _print_selective(chosen, split, saved)
    console.print("Plots: " + ", ".join(str(p) for p in plots))


def _print_selective(chosen: Any, split: str, saved: str | None) -> None:
    from rich.table import Table

    acc = "n/a" if chosen.selective_accuracy is None else f"{chosen.selective_accuracy:.1%}"
    head = (f"Threshold for {chosen.target_accuracy:.1%} selective accuracy: "
            f"[bold]{chosen.threshold:.4f}[/]: {chosen.passed} of {chosen.images} pass "
            f"({chosen.coverage:.0%}), {acc} of them right")
    console.print(head)
    if chosen.guaranteed:
        console.print(f"  [green]guaranteed[/]: with {chosen.confidence:.0%} confidence the "
                      f"selective accuracy on new images is >= "
                      f"{chosen.accuracy_lower_bound:.2%} ({chosen.method})")
    else:
        console.print(
            f"  [yellow]NOT guaranteed[/]: its {chosen.confidence:.0%} lower bound is only "
            f"{chosen.accuracy_lower_bound:.2%}. No threshold can certify "
            f"{chosen.target_accuracy:.1%} on {chosen.images} images: even with no error at "
            f"all, at least {chosen.images_needed} passing images are needed. This is the "
            "empirical threshold; label more images the model did not train on."
        )
    if split == "test":
        console.print("  [yellow]chosen on the test split, as asked[/]: its accuracy is no "
                      "longer an unbiased estimate for this model")
    table = Table(title="Coverage per true class", title_justify="left")
    for col in ("class", "images", "pass", "coverage", "accuracy of passed"):
        table.add_column(col, justify="right")
    for c in chosen.per_class:
        table.add_row(c.name, str(c.images), str(c.passed), f"{c.coverage:.0%}",
                      "-" if c.accuracy_on_passed is None else f"{c.accuracy_on_passed:.1%}")
    console.print(table)
    if saved:
        console.print(f"Stored as model.json's `selective` entry: {saved}")
    else:
        console.print("(not stored; add --save to write it into model.json)")
