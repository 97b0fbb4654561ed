"""CPU per captured record: the request path (`CaptureWriter.record`) and the writer thread.

Issue 13 asks for no loss of throughput with capture at 100 % against the code before the
hardening. A worker at c=64 is CPU-bound, so what capture costs it is the CPU of both
halves together; this measures them apart, for ours and for --baseline REF (the same
script run on that ref's `src`, exported with `git archive`), in alternating rounds.
Each round records --batch records of a 32x32 PNG (random pixels, ~3.2 KB, as
serve_bench.py posts) and then writes them to a store that discards them, all in one
thread, so `time.thread_time` counts this work alone (other processes on a shared machine
still slow it, through the caches and the clock, but do not add to it). Reported: the
median over 5 alternating slices of the lower quartile of their rounds, in µs CPU per
record. What it leaves out: the store's own write (for a LocalStore, the kernel's page
cache, the same for both) and the effect on the caches of the model's thread.

    python benchmarks/capture_bench.py [--baseline 53deb1f] [--rounds 60] [--batch 1000]
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class _NullStore:
    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None:
        self.size = len(data)

    def uri(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"


def measure(rounds: int, batch: int) -> dict[str, float]:
    """Run in the process whose `sconeflow` is the code measured (any version's API)."""
    import numpy as np
    from PIL import Image

    from sconeflow.serving import capture

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    body, output = buf.getvalue(), b"[0.12345678901234567, 0.8765432109876543]"
    config = capture.parse_capture_config(
        {"EnableCapture": True, "InitialSamplingPercentage": 100,
         "DestinationS3Uri": "s3://sconeflow/data_capture"}
    )  # fmt: skip
    options = inspect.signature(capture.CaptureWriter).parameters
    extra = {"buffer_bytes": 4 * batch * len(body)} if "buffer_bytes" in options else {}
    writer: Any = capture.CaptureWriter(
        config, _NullStore(), "bench", flush_records=10**9, flush_seconds=1e9, **extra
    )
    writer._closed = True  # stop its thread: this one does the writing, alone
    writer._wake.set()
    writer._thread.join()
    writer._closed = False

    def write_all() -> None:
        if hasattr(writer, "_drain"):  # the ring (issue 13)
            writer._drain()
        else:  # the queue of tuples before it
            writer._flush(writer._take(batch))

    record_us, write_us = [], []
    for _ in range(rounds + 1):  # the first round warms caches and the ring's pages
        t0 = time.thread_time()
        for _ in range(batch):
            writer.record("image/png", body, "application/json", output)
        t1 = time.thread_time()
        write_all()
        t2 = time.thread_time()
        record_us.append((t1 - t0) / batch * 1e6)
        write_us.append((t2 - t1) / batch * 1e6)
    assert writer.written == (rounds + 1) * batch, (writer.written, writer.dropped)

    def quartile(values: list[float]) -> float:
        return sorted(values[1:])[len(values[1:]) // 4]

    return {"record_us": quartile(record_us), "write_us": quartile(write_us)}


def run(src: Path, rounds: int, batch: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(rounds), str(batch)],
        env={**os.environ, "PYTHONPATH": str(src), "OPENBLAS_NUM_THREADS": "1"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


def export(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(int(sys.argv[2]), int(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--baseline", metavar="REF", help="git ref to compare with as 'before'")
    ap.add_argument("--rounds", type=int, default=60, help="rounds per code, alternating")
    ap.add_argument("--batch", type=int, default=1000, help="records per round")
    args = ap.parse_args()
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, python "
          f"{platform.python_version()}; load average {os.getloadavg()}")  # fmt: skip
    codes = {"ours": REPO / "src"}
    with tempfile.TemporaryDirectory(prefix="capture-bench-") as tmp:
        if args.baseline:
            codes["before"] = export(args.baseline, Path(tmp))
        # Alternating slices of the rounds, so that drift in the machine hits both alike.
        slices = 5
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in codes}
        for _ in range(slices):
            for label, src in codes.items():
                runs[label].append(run(src, max(1, args.rounds // slices), args.batch))
    results = {}
    for label, parts in runs.items():
        rec = sorted(p["record_us"] for p in parts)[len(parts) // 2]
        wr = sorted(p["write_us"] for p in parts)[len(parts) // 2]
        results[label] = rec + wr
        print(f"  {label:<7} request path {rec:6.2f} µs  writer thread {wr:6.2f} µs  "
              f"total {rec + wr:6.2f} µs CPU per record")  # fmt: skip
    if "before" in results:
        print(f"  ours / before (total CPU per record): {results['ours'] / results['before']:.2f}")


if __name__ == "__main__":
    main()
