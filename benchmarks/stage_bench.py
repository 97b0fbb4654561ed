"""Staging benchmark: the dev tarball, and synthetic all-classes tarballs up to 60,000 rows.

Target (issue 2): all 60,000 rows staged in under 60 s on 2 cores with peak memory under
1.5 GB, cost linear in rows. Each staging runs in a fresh process so that its peak RSS is
its own. Issue 13: every stage checks every object against what it should hold (the md5 of
each local file; on S3 the ETags of the listing), so it can repair what differs; the
"repair check" column is that check alone, timed after the staging, and its share of it.
Run: python benchmarks/stage_bench.py [--dev PATH] [--rows 6000,15000,30000,60000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "cifar-100-python.tar.gz"

CHILD = """
import json, sys, time, resource
from pathlib import Path
from sconeflow.config import load_settings
from sconeflow.staging import stage_cifar
from sconeflow.store import open_store
tarball, home, classes = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
s = load_settings(env={}, home=home)
t0 = time.perf_counter()
store = open_store(s)
r = stage_cifar(store, s.bucket, Path(tarball), classes)
dt = time.perf_counter() - t0
rows = sum(sum(c.values()) for c in r.counts.values())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
t1 = time.perf_counter()
objects = len(store.list_etags(s.bucket, "data/"))  # the repair check on its own
check = time.perf_counter() - t1
print(json.dumps({"rows": rows, "seconds": dt, "peak_mib": peak, "uploaded": r.load.uploaded,
                  "check_seconds": check, "objects": objects}))
"""


def run_child(tarball: Path, home: Path, classes: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tarball), str(home), classes],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _check(r: dict[str, float]) -> str:
    """The repair check's columns: seconds, per object, share of the staging it ran in."""
    per = 1e6 * r["check_seconds"] / max(1, r["objects"])
    return f"{r['check_seconds']:>16.3f}{per:>10.1f}{r['check_seconds'] / r['seconds']:>7.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--rows", default="6000,15000,30000,60000")
    args = parser.parse_args()
    from sconeflow.synthetic import make_cifar_tarball

    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"{'input':<28}{'rows':>8}{'seconds':>10}{'images/s':>10}{'peak MiB':>10}{'us/row':>9}"
        f"{'repair check s':>16}{'us/object':>10}{'share':>7}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        if args.dev.exists():
            r = run_child(args.dev, tmpdir / "dev", "bicycle,motorcycle")
            again = run_child(args.dev, tmpdir / "dev", "bicycle,motorcycle")
            print(
                f"{'dev tarball':<28}{r['rows']:>8}{r['seconds']:>10.2f}"
                f"{r['rows'] / r['seconds']:>10.0f}{r['peak_mib']:>10.0f}"
                f"{1e6 * r['seconds'] / r['rows']:>9.1f}{_check(r)}"
            )
            print(
                f"{'dev tarball, second run':<28}{again['rows']:>8}{again['seconds']:>10.2f}"
                f"{'':>10}{again['peak_mib']:>10.0f}{'':>9}{_check(again)}"
                f"   uploaded {again['uploaded']}"
            )
        for n in [int(x) for x in args.rows.split(",")]:
            n_test = n // 6
            tarball = make_cifar_tarball(tmpdir / f"syn{n}.tar.gz", n - n_test, n_test)
            r = run_child(tarball, tmpdir / f"h{n}", "all")
            results.append(r)
            print(
                f"{'synthetic all classes':<28}{r['rows']:>8}{r['seconds']:>10.2f}"
                f"{r['rows'] / r['seconds']:>10.0f}{r['peak_mib']:>10.0f}"
                f"{1e6 * r['seconds'] / r['rows']:>9.1f}{_check(r)}"
            )
        if results:
            # The undo log's worst case: the same names with other pixels, so every image
            # is overwritten and its old bytes held in memory until the stage commits.
            from sconeflow.synthetic import meta_dict, split_dict, write_tarball

            n = results[-1]["rows"]
            n_test = int(n) // 6
            other = write_tarball(
                tmpdir / "other.tar.gz",
                {
                    "cifar-100-python/meta": meta_dict(),
                    "cifar-100-python/train": split_dict(int(n) - n_test, seed=7),
                    "cifar-100-python/test": split_dict(n_test, seed=8),
                },
            )
            r = run_child(other, tmpdir / f"h{int(n)}", "all")
            print(
                f"{'same names, other pixels':<28}{r['rows']:>8}{r['seconds']:>10.2f}"
                f"{r['rows'] / r['seconds']:>10.0f}{r['peak_mib']:>10.0f}"
                f"{1e6 * r['seconds'] / r['rows']:>9.1f}{_check(r)}   overwrote {r['uploaded']}"
            )
    if len(results) >= 2:
        small, big = results[0], results[-1]
        ratio = (big["seconds"] / big["rows"]) / (small["seconds"] / small["rows"])
        print(
            f"cost per row at {big['rows']:.0f} rows / at {small['rows']:.0f} rows: {ratio:.2f} "
            "(1.0 = perfectly linear)"
        )
        ok = big["seconds"] < 60 and big["peak_mib"] < 1536
        print(f"target 60,000 rows < 60 s and < 1.5 GB: {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
