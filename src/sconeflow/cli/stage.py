"""`sconeflow stage`: the ETL step."""

from __future__ import annotations

from pathlib import Path

import click

from sconeflow.cifar import DEFAULT_CLASSES, OFFICIAL_MD5, OFFICIAL_URL
from sconeflow.cli.common import Context, console, json_option, pass_context, print_json
from sconeflow.progress import RichProgress

# Shared by `stage` and `pipeline`.
source_option = click.option(
    "--source",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A local cifar-100-python.tar.gz instead of downloading the official one.",
)


@click.command()
@source_option
@click.option(
    "--classes",
    default=",".join(DEFAULT_CLASSES),
    show_default=True,
    help="Comma-separated CIFAR-100 fine label names (label = position), or 'all'.",
)
@click.option("--url", default=OFFICIAL_URL, show_default=True, help="Download URL.")
@click.option("--md5", default=OFFICIAL_MD5, show_default=True, help="Expected md5.")
@json_option
@pass_context
def stage(
    ctx: Context, source: Path | None, classes: str, url: str, md5: str, as_json: bool
) -> None:
    """Stage CIFAR-100 rows as PNGs + SageMaker .lst manifests in the object store.

    Without --source, downloads the official tarball into <home>/downloads (resuming a
    partial download) and verifies its md5. With --source, checks that the three members
    are present and well-formed.
    """
    from sconeflow import staging
    from sconeflow.store import open_store

    settings = ctx.settings
    store = open_store(settings)
    wanted = [c.strip() for c in classes.split(",") if c.strip()]
    with RichProgress() as progress:
        if source is None:
            tarball = staging.download_cifar(
                settings.downloads_dir / "cifar-100-python.tar.gz",
                url=url,
                md5=md5,
                progress=progress,
            )
        else:
            tarball = source
        result = staging.stage_cifar(store, settings.bucket, tarball, wanted, progress=progress)
    if as_json:
        print_json(
            {
                "source": result.source,
                "official": result.official,
                "classes": result.classes,
                "counts": result.counts,
                "uploaded": result.load.uploaded,
                "skipped": result.load.skipped,
                "removed": result.load.removed,
                "repaired": result.load.repaired,
                "written": result.load.written,
                "location": result.load.location,
            }
        )
        return
    kind = "official CIFAR-100 (md5 verified)" if result.official else "members verified"
    console.print(f"Staged from [bold]{result.source}[/] ({kind})")
    from rich.table import Table

    table = Table(title_justify="left")
    table.add_column("split")
    for name in result.classes if len(result.classes) <= 10 else []:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for split, per_class in result.counts.items():
        values = [str(per_class[c]) for c in result.classes] if len(result.classes) <= 10 else []
        table.add_row(split, *values, str(sum(per_class.values())))
    console.print(table)
    load = result.load
    if load.current:
        console.print(f"Nothing to upload: {load.location} is already current.")
    else:
        other = load.written - load.uploaded
        console.print(
            f"Uploaded {load.uploaded} images and {other} manifests ({load.skipped} already "
            f"current, {load.removed} stale removed) to {load.location}"
        )
    if load.repaired:
        console.print(
            f"Repaired {load.repaired} objects that differed from what the manifest says "
            "(an earlier run failed or was interrupted, or they were changed by hand)."
        )
