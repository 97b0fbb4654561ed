"""Training benchmark: our default recipe vs the reference's settings, on the dev tarball.

Trains the default recipe (no hyperparameters: the epochs planned to the default time budget,
max_runtime_in_seconds=360) for several seeds on the 800 training images of the CIFAR-100
bicycle/motorcycle tarball and evaluates on its 200 test images (never used for training,
selection or calibration). Reports test accuracy, ECE (15 equal-width bins on max probability,
calibrated and raw), the threshold table, onnxruntime batch-1 latency with 2 intra-op threads,
MACs and parameters, and for every job: the budget, the planned epochs, the seconds, the
measured seconds per epoch, and the FLOPs per epoch and per job (budget.py counts them), so
that runs compare across machines. Then trains the reference's settings in the same run
(ResNet-20, 30 epochs, SGD lr 0.1 momentum 0.9, batch 32, wd 1e-4, no augmentation, constant
lr, no TTA, no calibration) and prints both side by side. Exits 1 if a job ran past its
budget.

    python benchmarks/train_bench.py [--seeds 0 1 2] [--baseline-seeds 0] [--json out.json]
        [--hp ensemble_size=2 max_runtime_in_seconds=600]
    python benchmarks/train_bench.py --smoke   # a minute: tiny data and epochs, no numbers

Also prints, per run, the ECE a perfectly calibrated model would show on this test set
(labels drawn from the model's own probabilities, 2,000 draws) and the errors among the 80%
most confident test images, which no temperature can move below a threshold.

Measured on the 2-core AMD EPYC VM, torch 2.13.0 CPU, onnxruntime 1.32 (session 2, before
the time budget, with 200 + 200 epochs):
    ours (defaults)    acc 0.940/0.930/0.920 (mean 0.930), ECE 0.038/0.042/0.031 against
                       floors 0.031/0.032/0.041, @0.93 pass 0.748 with 0.976 right, 3-6
                       errors among the 80% most confident, train 203 s, latency 0.33 ms,
                       48.5 M MACs, 294k params
    reference (seed 0) acc 0.790, ECE 0.161, @0.93 pass 0.795 with 0.862 right, 22 errors
                       among the 80% most confident, train 27 s, latency 0.31 ms, 40.8 M
                       MACs, 272k params
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from sconeflow.staging import read_cifar
from sconeflow.training.artifact import export_onnx
from sconeflow.training.augment import to_tensor
from sconeflow.training.budget import MAX_PLANNED_EPOCHS
from sconeflow.training.calibration import (
    DEFAULT_THRESHOLDS,
    ece_sampling_floor,
    errors_among_most_confident,
    expected_calibration_error,
    softmax,
    threshold_table,
)
from sconeflow.training.hyperparameters import parse_hyperparameters
from sconeflow.training.model import count_macs, count_parameters
from sconeflow.training.train import predict_logits, train

TARBALL = Path(__file__).resolve().parents[1].parent / "shared/data/cifar-100-python.tar.gz"
BICYCLE, MOTORCYCLE = 8, 48
# The reference's settings (AWS_FORMATS.md section 2) on a CPU-sized ResNet; the step at
# epoch 30 never fires, so the lr stays 0.1 as in the reference job.
REFERENCE = {
    "num_layers": "20",
    "epochs": "30",
    "learning_rate": "0.1",
    "optimizer": "sgd",
    "momentum": "0.9",
    "mini_batch_size": "32",
    "weight_decay": "0.0001",
    "augmentation_type": "none",
    "lr_scheduler_step": "30",
    "warmup_fraction": "0",
    "label_smoothing": "0",
    "flip_tta": "false",
    "validation_fraction": "0",
}


def load_split(split: str, tarball: Path = TARBALL) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 32, 32, 3), labels 0=bicycle 1=motorcycle) for 'train' or 'test', read
    with staging's checked reader (restricted unpickler, member checks)."""
    data = read_cifar(tarball).splits[split]
    fine = np.asarray(data.fine_labels)
    keep = (fine == BICYCLE) | (fine == MOTORCYCLE)
    return np.ascontiguousarray(data.images[keep]), (fine[keep] == MOTORCYCLE).astype(np.int64)


def latency_ms(onnx_bytes: bytes, runs: int = 2000) -> dict[str, float]:
    """Batch-1 onnxruntime latency with 2 intra-op threads: median and p90 in ms."""
    warmup = min(200, runs)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {"input": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90))}


def run(
    raw_hp: dict[str, str],
    seed: int,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    max_epochs: int = MAX_PLANNED_EPOCHS,
    latency_runs: int = 2000,
) -> dict[str, Any]:
    hp = parse_hyperparameters({**raw_hp, "seed": str(seed)})
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    start = time.perf_counter()
    result = train(x_train, y_train, hp, max_epochs=max_epochs)
    seconds = time.perf_counter() - start
    m = result.metrics
    logits = predict_logits(result.nets, to_tensor(x_test), hp.flip_tta)
    probs, raw = softmax(logits, result.temperature), softmax(logits)
    onnx_bytes = export_onnx(result)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_probs = session.run(None, {"input": to_tensor(x_test).contiguous().numpy()})[0]
    views = 2 if hp.flip_tta else 1
    return {
        "seed": seed,
        "train_seconds": seconds,
        "budget_seconds": hp.max_runtime_in_seconds,
        "within_budget": seconds <= hp.max_runtime_in_seconds,
        "epochs_planned": m["epochs_planned"],
        "epochs_planned_by": m["epochs_planned_by"],
        "epochs_run": m["epochs_run"],
        "fits": "+".join(
            f"{sum(h.phase == p for h in result.history)} {p}"
            for p in ("holdout", "full")
            if any(h.phase == p for h in result.history)
        ),
        "seconds_per_epoch": {
            p: m[f"seconds_per_epoch_{p}"]
            for p in ("holdout", "full")
            if f"seconds_per_epoch_{p}" in m
        },
        "flops_per_epoch": m["flops_per_epoch"],
        "train_flops": m["train_flops"],
        "temperature": result.temperature,
        "accuracy": float(np.mean(probs.argmax(1) == y_test)),
        "ece": expected_calibration_error(probs, y_test),
        "ece_uncalibrated": expected_calibration_error(raw, y_test),
        "ece_floor": ece_sampling_floor(probs).__dict__,
        "errors_in_top_80pct": errors_among_most_confident(probs, y_test, 0.8),
        "onnx_max_abs_diff": float(np.abs(onnx_probs - probs).max()),
        "thresholds": [r.__dict__ for r in threshold_table(probs, y_test, DEFAULT_THRESHOLDS)],
        "thresholds_uncalibrated": [r.__dict__ for r in threshold_table(raw, y_test)],
        "validation": {k: v for k, v in result.metrics.items() if k.startswith("validation_")},
        "latency_ms": latency_ms(onnx_bytes, latency_runs),
        "macs": count_macs(result.nets[0], hp.image_shape) * len(result.nets) * views,
        "parameters": sum(count_parameters(n) for n in result.nets),
    }


def summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, float]:
    print(f"\n== {name}")
    for r in runs:
        at = {row["threshold"]: row for row in r["thresholds"]}[0.93]
        print(
            f"seed {r['seed']}: acc {r['accuracy']:.3f}  ECE {r['ece']:.4f} "
            f"(raw {r['ece_uncalibrated']:.4f})  T {r['temperature']:.3f}  "
            f"@0.93 pass {at['pass_share']:.3f} acc {at['accuracy_on_passed']:.4f}  "
            f"train {r['train_seconds']:.1f} s  latency {r['latency_ms']['median']:.3f} ms "
            f"(p90 {r['latency_ms']['p90']:.3f})  onnx diff {r['onnx_max_abs_diff']:.1e}"
        )
        floor = r["ece_floor"]
        print(
            f"   if perfectly calibrated, ECE on this test set would be {floor['mean']:.4f} "
            f"+- {floor['std']:.4f} (<= 0.03 in {floor['p_at_most'][0.03]:.0%} of draws); "
            f"errors among the 80% most confident: {r['errors_in_top_80pct']}"
        )
        print("   threshold  pass_share  acc_on_passed")
        for row in r["thresholds"]:
            print(
                f"   {row['threshold']:9.2f}  {row['pass_share']:10.3f}  "
                f"{row['accuracy_on_passed']:13.4f}"
            )
    mean = {
        key: float(np.mean([r[key] for r in runs]))
        for key in ("accuracy", "ece", "train_seconds", "temperature", "train_flops")
    }
    mean["latency_ms"] = float(np.mean([r["latency_ms"]["median"] for r in runs]))
    mean["macs"] = runs[0]["macs"]
    mean["parameters"] = runs[0]["parameters"]
    mean["min_accuracy"] = min(r["accuracy"] for r in runs)
    for key in ("pass_share", "accuracy_on_passed"):
        mean[f"{key}@0.93"] = float(
            np.mean([{w["threshold"]: w for w in r["thresholds"]}[0.93][key] for r in runs])
        )
    print(
        f"mean: acc {mean['accuracy']:.4f} (min {mean['min_accuracy']:.3f})  "
        f"ECE {mean['ece']:.4f}  @0.93 pass {mean['pass_share@0.93']:.3f} "
        f"acc {mean['accuracy_on_passed@0.93']:.4f}  train {mean['train_seconds']:.1f} s  "
        f"latency {mean['latency_ms']:.3f} ms  {mean['macs'] / 1e6:.1f} M MACs/image "
        f"({2 * mean['macs'] / 1e6:.1f} MFLOPs)  {mean['parameters']:,} parameters"
    )
    return mean


def print_jobs(jobs: list[tuple[str, dict[str, Any]]]) -> bool:
    """One line per job: budget, plan, seconds, per-epoch time, FLOPs; True if all fit."""
    print("\n== every job against its budget (max_runtime_in_seconds)")
    print(f"{'job':10s} {'seed':>4s} {'budget s':>8s} {'epochs':>7s} {'by':>14s} "
          f"{'fits':>20s} {'seconds':>8s} {'s/epoch':>16s} {'GFLOP/epoch':>11s} "
          f"{'TFLOP/job':>9s} {'GFLOP/s':>7s}  within")  # fmt: skip
    for name, r in jobs:
        per_epoch = "/".join(f"{v:.3f}" for v in r["seconds_per_epoch"].values())
        print(
            f"{name:10s} {r['seed']:4d} {r['budget_seconds']:8d} {r['epochs_planned']:7d} "
            f"{r['epochs_planned_by']:>14s} {r['fits']:>20s} {r['train_seconds']:8.1f} "
            f"{per_epoch:>16s} {r['flops_per_epoch'] / 1e9:11.2f} "
            f"{r['train_flops'] / 1e12:9.3f} {r['train_flops'] / 1e9 / r['train_seconds']:7.1f}"
            f"  {'yes' if r['within_budget'] else 'NO'}"
        )
    ok = all(r["within_budget"] for _, r in jobs)
    print(f"every job within its budget: {'yes' if ok else 'NO'}")
    return ok


def _smoke_tarball(folder: Path) -> Path:
    """A tiny CIFAR-100-format tarball of random bicycles and motorcycles."""
    from sconeflow.synthetic import meta_dict, split_dict, write_tarball

    return write_tarball(
        folder / "smoke.tar.gz",
        {
            "cifar-100-python/meta": meta_dict(),
            "cifar-100-python/train": split_dict(96, labels=[BICYCLE, MOTORCYCLE] * 48, seed=1),
            "cifar-100-python/test": split_dict(32, labels=[BICYCLE, MOTORCYCLE] * 16, seed=2),
        },
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--baseline-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--json", type=Path, help="write every number here as JSON")
    parser.add_argument(
        "--hp", nargs="*", default=[], metavar="KEY=VALUE", help="override our recipe's defaults"
    )
    parser.add_argument("--tarball", type=Path, default=TARBALL, help="CIFAR-100 tarball")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check the script works: 96 random training images, 3 planned epochs, reference "
        "cut to 2 epochs, one seed each, short latency runs (its numbers mean nothing)",
    )
    args = parser.parse_args()
    max_epochs, latency_runs, reference_hp = MAX_PLANNED_EPOCHS, 2000, dict(REFERENCE)
    if args.smoke:
        args.seeds, args.baseline_seeds = args.seeds[:1], args.baseline_seeds[:1]
        max_epochs, latency_runs = 3, 50
        reference_hp.update(epochs="2", lr_scheduler_step="2")
        args.tarball = _smoke_tarball(Path(tempfile.mkdtemp(prefix="train-bench-smoke-")))
    if not args.tarball.is_file():
        raise SystemExit(f"tarball not found at {args.tarball}; pass --tarball or --smoke")
    print(
        f"machine: {platform.platform()}, {_cpu_model()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; python "
        f"{platform.python_version()}, torch {torch.__version__}, onnxruntime "
        f"{ort.__version__}, numpy {np.__version__}"
    )
    data = {"train": load_split("train", args.tarball), "test": load_split("test", args.tarball)}
    print(f"data: train {len(data['train'][1])} images, test {len(data['test'][1])} images")
    overrides = dict(item.split("=", 1) for item in args.hp)
    ours = [run(overrides, s, data, max_epochs=max_epochs, latency_runs=latency_runs)
            for s in args.seeds]  # fmt: skip
    ours_mean = summarise(f"sconeflow default recipe {overrides or ''}", ours)
    reference = [run(reference_hp, s, data, latency_runs=latency_runs)
                 for s in args.baseline_seeds]  # fmt: skip
    report: dict[str, Any] = {"ours": ours, "ours_mean": ours_mean, "reference": reference}
    if reference:
        ref_mean = summarise(
            "reference settings (ResNet-20, 30 epochs, no augmentation)", reference
        )
        report["reference_mean"] = ref_mean
        print("\n== ours / reference")
        for key in ("accuracy", "ece", "train_seconds", "train_flops", "latency_ms", "macs",
                    "parameters"):  # fmt: skip
            print(
                f"{key:14s} {ours_mean[key]:12.4g} {ref_mean[key]:12.4g}  "
                f"ratio {ours_mean[key] / ref_mean[key]:.3f}"
            )
    within = print_jobs([("ours", r) for r in ours] + [("reference", r) for r in reference])
    report["every_job_within_budget"] = within
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    if not within:
        sys.exit(1)


if __name__ == "__main__":
    main()
