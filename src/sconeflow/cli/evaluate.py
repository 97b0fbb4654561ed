"""`sconeflow evaluate`: a model artifact over a staged split, as the endpoint sees it."""

from __future__ import annotations

from pathlib import Path

import click

from sconeflow.cli.common import Context, console, json_option, pass_context, print_json
from sconeflow.errors import ConfigError
from sconeflow.progress import RichProgress
from sconeflow.store import open_store


@click.command()
@click.option("--model", required=True, help="Training job name, model.tar.gz or model folder.")
@click.option("--split", default="test", show_default=True, help="Staged split to evaluate on.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for reliability.png and confusion.png (default: <home>/evaluations/...).",
)
@json_option
@pass_context
def evaluate(ctx: Context, model: str, split: str, out: Path | None, as_json: bool) -> None:
    """Accuracy, confusion matrix, calibration (ECE) and the confidence-threshold table,
    computed with the endpoint's own preprocessing and runtime; writes two plots."""
    from sconeflow.evaluation import evaluate_model, plot_confusion, plot_reliability

    settings = ctx.settings
    with RichProgress() as progress:
        ev = evaluate_model(settings, open_store(settings), model, split, progress=progress)
    out = out or settings.home / "evaluations" / f"{Path(model).name}-{split}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "reliability.png").write_bytes(plot_reliability(ev))
        (out / "confusion.png").write_bytes(plot_confusion(ev))
    except OSError as err:
        raise ConfigError(
            f"--out {str(out)[:200]!r}: cannot write the plots there ({err.strerror}); pass "
            "--out with a folder you can write"
        ) from err
    if as_json:
        print_json({**ev.to_dict(), "plots": [str(out / "reliability.png"),
                                              str(out / "confusion.png")]})  # fmt: skip
        return
    from rich.table import Table

    console.print(
        f"[bold]{model}[/] on {split} ({len(ev.labels)} images): accuracy "
        f"[bold]{ev.accuracy:.3f}[/], ECE {ev.ece:.3f} (15 bins)"
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
    th = Table(title="Confidence thresholds (workflow: 0.93)", title_justify="left")
    for col in ("threshold", "pass", "share", "accuracy of passed"):
        th.add_column(col, justify="right")
    for r in ev.thresholds():
        acc = "-" if r.passed == 0 else f"{r.accuracy_on_passed:.1%}"
        th.add_row(f"{r.threshold:.2f}", str(r.passed), f"{r.pass_share:.0%}", acc)
    console.print(th)
    console.print(f"Plots: {out / 'reliability.png'}, {out / 'confusion.png'}")
