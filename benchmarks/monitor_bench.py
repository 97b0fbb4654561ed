"""Detection power and false alarm rate of `sconeflow monitor` on CIFAR bicycle/motorcycle.

Claim checked here: darkened, blurred and noisy images, and a class mix moved from 50/50 to
90/10, are each flagged within 200 captured requests; windows drawn from the same
distribution as the baseline raise a false alarm in at most 5% of 40 windows.

Setup: the dev (or official) tarball is staged into a temporary workspace. The model is
`--model model.tar.gz` (run with onnxruntime, as the endpoint does) or, by default, a small
CNN trained here with torch on 500 of the 800 training images and temperature-calibrated on
the other 300. The baseline is the model on those 300 held-out images (never trained on), so
it describes unseen traffic; windows are drawn with replacement from the 200 test images and
go through the real path: capture JSONL in the store -> read -> features -> checks. With
--model (trained on all 800) the baseline is the test images themselves.

The peer: Model Monitor's distance rule without a significance test ("Simple": a feature
drifts when its distance exceeds comparison_threshold 0.1), computed from the same tests.

    python benchmarks/monitor_bench.py [--model path/to/model.tar.gz] [--windows 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from sconeflow.config import load_settings
from sconeflow.monitoring.baseline import Baseline, build_baseline
from sconeflow.monitoring.capture_reader import CaptureRecord
from sconeflow.monitoring.features import compute_features
from sconeflow.monitoring.runner import analyse_window
from sconeflow.monitoring.simulate import (
    add_noise,
    blur,
    darken,
    decode_pngs,
    encode_pngs,
    write_capture,
)
from sconeflow.staging import parse_lst, stage_cifar
from sconeflow.store import Store, open_store

REPO = Path(__file__).resolve().parents[1]
DEV_TARBALL = REPO.parent / "shared" / "data" / "cifar-100-python.tar.gz"
CLASSES = ["bicycle", "motorcycle"]
GRID = (10, 20, 30, 50, 75, 100, 150, 200)  # window sizes tried, in requests
WINDOW = 200
T0 = datetime(2025, 8, 22, 4, 0, 0, tzinfo=UTC)
# Training of the fallback model: 500 images, 2 CPU cores, about a minute.
EPOCHS, BATCH, LR, TRAIN_N = 30, 64, 2e-3, 500

Predict = Callable[[np.ndarray], np.ndarray]  # (N, 32, 32, 3) uint8 -> (N, K) probabilities


def load_split(store: Store, bucket: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = parse_lst(store.get(bucket, f"data/{split}.lst").decode())
    pngs = [store.get(bucket, f"data/{split}/{name}") for _, _, name in rows]
    return decode_pngs(pngs), np.array([label for _, label, _ in rows])


def train_model(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> Predict:
    """A small CNN, temperature-calibrated on (x_val, y_val); returns a batch predictor."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    mean = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)

    def tensor(images: np.ndarray) -> torch.Tensor:  # (N,H,W,3) uint8 -> (N,3,H,W) ~N(0,1)
        return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / 0.25

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c_out), nn.ReLU())

    net = nn.Sequential(block(3, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2),
                        block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Dropout(0.2), nn.Linear(128, 2))
    xt, yt = tensor(x), torch.from_numpy(y).long()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=EPOCHS * -(-len(x) // BATCH))
    for _ in range(EPOCHS):
        net.train()
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), BATCH):
            xb, yb = xt[order[i:i + BATCH]], yt[order[i:i + BATCH]]
            flip = torch.rand(len(xb)) < 0.5  # horizontal flips, whole batch at once
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()

    def logits(images: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([net(tensor(images[i:i + 256])) for i in range(0, len(images), 256)])

    val_logits, yv = logits(x_val), torch.from_numpy(y_val).long()
    temps = torch.linspace(0.5, 5.0, 91)
    nll = [nn.functional.cross_entropy(val_logits / t, yv).item() for t in temps]
    temperature = float(temps[int(np.argmin(nll))])
    acc = float((val_logits.argmax(1) == yv).float().mean())
    print(f"fallback model: {TRAIN_N} train images, {EPOCHS} epochs, held-out accuracy "
          f"{acc:.3f}, temperature {temperature:.2f}")
    return lambda images: torch.softmax(logits(images) / temperature, 1).numpy()


def onnx_model(path: Path, workdir: Path) -> Predict:
    from sconeflow.serving.inference import load_predictor, predict
    from sconeflow.serving.model import prepare_model_dir

    predictor = load_predictor(prepare_model_dir(path, workdir / "model"), threads=2)
    return lambda images: predict(predictor, encode_pngs(images))


def window_result(store: Store, bucket: str, endpoint: str, images: np.ndarray,
                  model: Predict, baseline: Baseline, n_values: tuple[int, ...] = GRID,
                  ) -> list[tuple[int, list[str], bool]]:
    """Write one stream of requests as capture, then monitor its first n for each n:
    (n, features flagged by our rule, flagged by the distance-only rule)."""
    write_capture(store, bucket, endpoint, encode_pngs(images), model(images), start=T0,
                  interval=timedelta(seconds=1))
    out = []
    for n in n_values:
        analysis = analyse_window(store, bucket, endpoint=endpoint, class_names=CLASSES,
                                  baseline=baseline, since=T0, until=T0 + timedelta(seconds=n))
        assert len(analysis.table) == n, (len(analysis.table), n)
        flagged = sorted({v["feature_name"] for v in analysis.checks.violations})
        simple = any(d.distance > d.threshold for d in analysis.checks.drift)
        out.append((n, flagged, simple))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="model.tar.gz (default: train a small CNN)")
    ap.add_argument("--tarball", type=Path, default=DEV_TARBALL)
    ap.add_argument("--windows", type=int, default=40, help="in-distribution windows")
    args = ap.parse_args()
    started = time.perf_counter()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        settings = load_settings(env={}, home=Path(tmp) / "home")
        store, bucket = open_store(settings), settings.bucket
        stage_cifar(store, bucket, args.tarball)
        x_train, y_train = load_split(store, bucket, "train")
        x_test, y_test = load_split(store, bucket, "test")
        rng = np.random.default_rng(0)
        if args.model:
            model = onnx_model(args.model, Path(tmp))
            x_base = x_test
        else:
            order = rng.permutation(len(x_train))
            fit, held = order[:TRAIN_N], order[TRAIN_N:]
            model = train_model(x_train[fit], y_train[fit], x_train[held], y_train[held])
            x_base = x_train[held]
        test_acc = float(np.mean(model(x_test).argmax(1) == y_test))
        recs = [CaptureRecord(f"b{i}", T0, "image/png", png, tuple(p)) for i, (png, p) in
                enumerate(zip(encode_pngs(x_base), model(x_base), strict=True))]
        baseline = build_baseline(compute_features(recs, CLASSES))
        print(f"baseline: {len(recs)} images; test accuracy {test_acc:.3f}; est. accuracy "
              f"(mean confidence) baseline {baseline.est_accuracy:.3f}")

        def draw(n: int, seed: int, labels: np.ndarray | None = None,
                 p0: float = 0.5) -> np.ndarray:
            r = np.random.default_rng(seed)
            if labels is None:
                return x_test[r.integers(0, len(x_test), n)]
            pick0 = r.random(n) < p0  # class 0 with probability p0
            idx0, idx1 = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
            return x_test[np.where(pick0, r.choice(idx0, n), r.choice(idx1, n))]

        shifts = {
            "darkened (x0.6)": darken(draw(WINDOW, 1), 0.6),
            "blurred (sigma 1 px)": blur(draw(WINDOW, 2), 1.0),
            "noisy (sigma 10)": add_noise(draw(WINDOW, 3), 10.0, seed=3),
            "class mix 90/10": draw(WINDOW, 4, y_test, p0=0.9),
        }
        rows: list[tuple[str, tuple[int, list[str]] | None, int | None]] = []
        ok = True
        for name, images in shifts.items():
            res = window_result(store, bucket, f"bench-{len(rows)}", images, model, baseline)
            first = next(((n, f) for n, f, _ in res if f), None)
            simple = next((n for n, _, s in res if s), None)
            rows.append((name, first, simple))
            ok &= first is not None and first[0] <= WINDOW
        alarms = simple_alarms = 0
        by_feature: dict[str, int] = {}
        for w in range(args.windows):
            images = draw(WINDOW, 1000 + w)
            [(_, flagged, simple_hit)] = window_result(
                store, bucket, f"bench-null-{w}", images, model, baseline, (WINDOW,))
            alarms += bool(flagged)
            for f in flagged:
                by_feature[f] = by_feature.get(f, 0) + 1
            simple_alarms += simple_hit
    print(f"\n{'shift':<22} {'n to detection':>14}  {'Simple rule n':>13}  flagged features")
    for name, first, simple in rows:
        n = "not flagged" if first is None else str(first[0])
        feats = "" if first is None else ", ".join(first[1])
        print(f"{name:<22} {n:>14}  {simple if simple is not None else '-':>13}  {feats}")
    rate = alarms / args.windows
    print(f"\nfalse alarms, {args.windows} in-distribution windows of {WINDOW} requests: "
          f"{alarms}/{args.windows} = {rate:.1%} (KS/chi-square + Holm, alpha 0.01, "
          f"distance > 0.1); Simple rule (distance > 0.1 only): "
          f"{simple_alarms}/{args.windows} = {simple_alarms / args.windows:.1%}")
    if by_feature:
        print("false alarms by feature: " + ", ".join(f"{k} {v}" for k, v in
                                                    sorted(by_feature.items())))
    ok &= rate <= 0.05
    print(f"\n{'PASS' if ok else 'FAIL'}: every shift flagged within {WINDOW} requests, "
          f"false alarm rate <= 5%  ({time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
