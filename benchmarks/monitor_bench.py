"""Detection power and false alarms of `sconeflow monitor` on CIFAR bicycle/motorcycle, with
Evidently's embedding drift as the peer, in the same run.

Claim checked here: each shift below is flagged within 200 captured requests; windows from
the same distribution as the baseline raise a false alarm in at most 5% of 40 windows; and
on no shift does sconeflow need more requests than Evidently.

    darkened (x0.6), blurred (sigma 1 px), noisy (sigma 10)      image statistics see these
    flip + 90-degree rotation, JPEG quality 10, zoomed crop,     image statistics miss or
    grayscale, class mix 50/50 -> 90/10                          barely see these

Columns (requests to the first alarm, over windows of 10 ... 200 requests of one stream):
    features    the image and output features alone (KS / Fisher, Holm), no embedding
    embedding   the MMD permutation test on the model's embedding alone, at alpha 0.01
    sconeflow   everything a run tests, with its correction (alpha 0.01 split over three
                questions): what `sconeflow monitor run` reports
    Evidently   Evidently's EmbeddingsDriftMetric default for these sizes: a domain
                classifier (SGD logistic regression), drift when its ROC AUC beats the 95th
                percentile of random AUCs (`model(bootstrap=True)`), on the same embeddings.
                Optional: `pip install evidently "pandas<3"` (heavy: pandas, pyarrow,
                scikit-learn, statsmodels, plotly...; not a sconeflow dependency).

Setup: the dev (or official) tarball is staged into a temporary workspace. The model is
`--model model.tar.gz` (the artifact with its embedding output, run by the endpoint's own
code) or, by default, a small CNN trained here with torch on 500 of the 800 training images,
temperature-calibrated on the other 300 and exported the same way (probabilities plus the
classifier head's input as "embedding"). Baseline: images the model never trained on (the
300 held-out training images; with --model, one half of data/test). Windows are drawn with
replacement from the other images and go through the real path: capture JSONL in the store
-> read -> features and embeddings from the captured bytes -> checks.

    python benchmarks/monitor_bench.py [--model path/to/model.tar.gz] [--windows 40]
    python benchmarks/monitor_bench.py --smoke        # seconds: tiny sizes, numbers mean nothing
    python benchmarks/monitor_bench.py --cost         # capture field vs recompute, CPU time
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from sconeflow.config import load_settings
from sconeflow.monitoring.baseline import Baseline, build_baseline, build_statistics
from sconeflow.monitoring.capture_reader import CaptureRecord, read_capture
from sconeflow.monitoring.checks import EMBEDDING_FEATURE, check_window
from sconeflow.monitoring.embeddings import Embedder, load_embedder, mmd_test
from sconeflow.monitoring.features import compute_features
from sconeflow.monitoring.simulate import (
    add_noise,
    blur,
    darken,
    decode_pngs,
    encode_pngs,
    flip_rotate,
    grayscale,
    jpeg,
    write_capture,
    zoom_crop,
)
from sconeflow.staging import parse_lst, stage_cifar
from sconeflow.store import Store, open_store

REPO = Path(__file__).resolve().parents[1]
DEV_TARBALL = REPO.parent / "shared" / "data" / "cifar-100-python.tar.gz"
CLASSES = ["bicycle", "motorcycle"]
GRID = (10, 20, 30, 50, 75, 100, 150, 200)  # window sizes tried, in requests
WINDOW = 200
ALPHA_USED = [0.01]  # sconeflow's alpha; --alpha changes it
T0 = datetime(2025, 8, 22, 4, 0, 0, tzinfo=UTC)
METHODS = ("features", "embedding", "sconeflow", "Evidently")
# Training of the fallback model: 500 images, 2 CPU cores, about a minute.
EPOCHS, BATCH, LR, TRAIN_N = 30, 64, 2e-3, 500
MEAN, STD = 0.5, 0.25

Predict = Callable[[list[bytes]], np.ndarray]  # PNG bytes -> (N, K) probabilities


def load_split(store: Store, bucket: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = parse_lst(store.get(bucket, f"data/{split}.lst").decode())
    pngs = [store.get(bucket, f"data/{split}/{name}") for _, _, name in rows]
    return decode_pngs(pngs), np.array([label for _, label, _ in rows])


def train_model(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                out: Path, epochs: int) -> Path:
    """A small CNN, temperature-calibrated on (x_val, y_val), exported as a model folder
    (model.onnx with "probabilities" and "embedding", model.json) like a training job's."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    def tensor(images: np.ndarray) -> torch.Tensor:  # (N,H,W,3) uint8 -> (N,3,H,W) ~N(0,1)
        return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c_out), nn.ReLU())

    body = nn.Sequential(block(3, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2),
                         block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(128, 2))
    net = nn.Sequential(body, head)
    xt, yt = tensor(x), torch.from_numpy(y).long()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=epochs * -(-len(x) // BATCH))
    for _ in range(epochs):
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
    with torch.no_grad():
        val_logits = net(tensor(x_val))
    yv = torch.from_numpy(y_val).long()
    temps = torch.linspace(0.5, 5.0, 91)
    nll = [nn.functional.cross_entropy(val_logits / t, yv).item() for t in temps]
    temperature = float(temps[int(np.argmin(nll))])
    acc = float((val_logits.argmax(1) == yv).float().mean())
    print(f"fallback model: {len(x)} train images, {epochs} epochs, held-out accuracy "
          f"{acc:.3f}, temperature {temperature:.2f}")

    class Export(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = body, head

        def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            feats = self.body(z)  # (B, 128): the classifier head's input
            return torch.softmax(self.head(feats) / temperature, 1), feats

    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(Export().eval(), (torch.zeros(1, 3, 32, 32),), str(out / "model.onnx"),
                          input_names=["input"], output_names=["probabilities", "embedding"],
                          dynamic_axes={"input": {0: "b"}, "probabilities": {0: "b"},
                                        "embedding": {0: "b"}}, opset_version=17, dynamo=False)
    (out / "model.json").write_text(json.dumps({
        "classes": CLASSES, "image_shape": [3, 32, 32], "output": "probabilities",
        "normalization": {"mean": [MEAN] * 3, "std": [STD] * 3}, "temperature": temperature,
        "embedding_tensor": {"name": "embedding", "dtype": "float32", "shape": ["batch", 128]},
    }))
    return out


def open_model(model_dir: Path) -> tuple[Predict, Embedder]:
    from sconeflow.serving.inference import load_predictor, predict

    predictor = load_predictor(model_dir, threads=2)
    embedder, why = load_embedder(model_dir)
    if embedder is None:
        raise SystemExit(f"--model: {why}; retrain with this sconeflow version")
    return (lambda pngs: predict(predictor, pngs)), embedder


def evidently_drift(base: np.ndarray, cur: np.ndarray) -> bool | None:
    """Evidently's default embedding drift for small references, or None if not installed."""
    try:
        import pandas as pd
        from evidently.legacy.metrics.data_drift.embedding_drift_methods import model
    except ImportError:
        return None
    cols = [f"e{i}" for i in range(base.shape[1])]
    _, drifted, _ = model(bootstrap=True)(pd.DataFrame(cur, columns=cols),
                                          pd.DataFrame(base, columns=cols))
    return bool(drifted)


def window_result(store: Store, bucket: str, endpoint: str, pngs: list[bytes],
                  predict: Predict, embedder: Embedder, baseline: Baseline,
                  baseline_plain: Baseline, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """Write one stream of requests as capture, then monitor its first n for each n."""
    write_capture(store, bucket, endpoint, pngs, predict(pngs), start=T0,
                  interval=timedelta(seconds=1))
    batch = read_capture(store, bucket, endpoint, since=T0, until=T0 + timedelta(hours=1))
    full = compute_features(batch.records, CLASSES, embedder=embedder)
    ref, _ = baseline.embeddings or (np.zeros((0, 1)), "")
    out = []
    for n in sizes:
        records = batch.records[:n]
        table = compute_features(records, CLASSES)
        assert full.embeddings is not None
        table.embeddings, table.embedding_model = full.embeddings[:n], full.embedding_model
        stats = build_statistics(table)
        everything = check_window(table, stats, baseline, alpha=ALPHA_USED[0])
        plain_table = compute_features(records, CLASSES)
        plain = check_window(plain_table, build_statistics(plain_table), baseline_plain,
                             alpha=ALPHA_USED[0])
        distinct = table.embeddings[table.first_occurrences()]
        mmd = mmd_test(ref, distinct)
        out.append({
            "n": n,
            "features": sorted(d.feature for d in plain.drifted),
            "embedding": mmd.p_value < ALPHA_USED[0],
            "sconeflow": sorted(d.feature for d in everything.drifted),
            "Evidently": evidently_drift(ref, distinct),
        })
    return out


def first_alarm(rows: list[dict[str, Any]], method: str) -> int | None:
    for r in rows:
        if r[method]:
            return int(r["n"])
    return None


def measure_cost(model_dir: Path, images: list[bytes], rounds: int) -> None:
    """CPU time per image of the two ways captures can carry the embedding, same run:
    (a) a capture field: the endpoint asks for both outputs and writes the vector into the
    capture line; (b) recomputed: the monitor decodes the captured image and runs the
    graph for the embedding alone. Relative numbers are what matter on a shared machine."""
    import onnxruntime as ort

    from sconeflow.serving.inference import decode, normalize
    from sconeflow.serving.model import read_meta

    meta = read_meta(model_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / "model.onnx"), opts,
                                   providers=["CPUExecutionProvider"])
    x8 = normalize(np.stack([decode(b, meta) for b in images[:8]]), meta)

    def serve(outputs: list[str]) -> None:  # one micro-batch of 8, as the endpoint runs it
        res = session.run(outputs, {"input": x8})
        if len(res) == 2:  # the capture field: the vector as JSON in each record
            for row in res[1]:
                json.dumps([round(float(v), 5) for v in row])

    def recompute() -> None:  # the monitor: decode + normalise + embedding, per 8 images
        pix = np.stack([decode(b, meta) for b in images[:8]])
        session.run(["embedding"], {"input": normalize(pix, meta)})

    cases = {"serve, probabilities only": lambda: serve(["probabilities"]),
             "serve + embedding capture field": lambda: serve(["probabilities", "embedding"]),
             "monitor recomputes embedding": recompute}
    spent = dict.fromkeys(cases, 0.0)
    for _ in range(rounds):  # alternate, so load on the machine hits every case alike
        for name, fn in cases.items():
            t = time.process_time()
            fn()
            spent[name] += time.process_time() - t
    per_image = {k: v / rounds / 8 * 1e6 for k, v in spent.items()}
    base = per_image["serve, probabilities only"]
    print(f"\nCPU time per image, {rounds} rounds of 8 images, one onnxruntime thread:")
    for name, us in per_image.items():
        print(f"  {name:<34} {us:8.1f} us  ({us / base:.2f}x serving alone)")
    field = per_image["serve + embedding capture field"] - base
    dim = session.get_outputs()[1].shape[-1]
    line = len(json.dumps([round(0.123456, 5)] * int(dim)))
    png = int(np.mean([len(base64.b64encode(b)) for b in images[:8]]))
    print(f"  capture field: +{field:.1f} us on the request path per image, +{line} bytes per "
          f"record (the base64 PNG is {png} bytes); recompute: "
          f"{per_image['monitor recomputes embedding']:.1f} us per image, in the monitor only")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="model.tar.gz (default: train a small CNN)")
    ap.add_argument("--tarball", type=Path, default=DEV_TARBALL)
    ap.add_argument("--windows", type=int, default=40, help="in-distribution windows")
    ap.add_argument("--alpha", type=float, default=ALPHA_USED[0],
                    help="sconeflow's alpha (the monitor's --alpha; default 0.01)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes to check the script runs (numbers mean nothing)")
    ap.add_argument("--cost", action="store_true",
                    help="only measure capture field vs recompute (CPU time per image)")
    args = ap.parse_args()
    ALPHA_USED[0] = args.alpha
    started = time.perf_counter()
    grid = (10, 50) if args.smoke else GRID
    windows = 2 if args.smoke else args.windows
    window = max(grid)
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
            from sconeflow.serving.model import prepare_model_dir

            model_dir = prepare_model_dir(args.model, Path(tmp) / "model")
            order = rng.permutation(len(x_test))  # the model trained on all of data/train
            x_base, x_pool, y_pool = x_test[order[:100]], x_test[order[100:]], y_test[order[100:]]
        else:
            order = rng.permutation(len(x_train))
            fit, held = order[:TRAIN_N], order[TRAIN_N:]
            model_dir = train_model(x_train[fit], y_train[fit], x_train[held], y_train[held],
                                    Path(tmp) / "model", 2 if args.smoke else EPOCHS)
            x_base, x_pool, y_pool = x_train[held], x_test, y_test
        predict, embedder = open_model(model_dir)
        if args.cost:
            measure_cost(model_dir, encode_pngs(x_pool[:8]), 20 if args.smoke else 400)
            return 0
        pool_acc = float(np.mean(predict(encode_pngs(x_pool)).argmax(1) == y_pool))
        base_pngs = encode_pngs(x_base)
        recs = [CaptureRecord(f"b{i}", T0, "image/png", png, tuple(p)) for i, (png, p) in
                enumerate(zip(base_pngs, predict(base_pngs), strict=True))]
        baseline = build_baseline(compute_features(recs, CLASSES, embedder=embedder))
        baseline_plain = build_baseline(compute_features(recs, CLASSES))
        peer = evidently_drift(np.zeros((4, 2)), np.ones((4, 2))) is not None
        print(f"baseline: {len(recs)} images the model never trained on; accuracy on the "
              f"window pool {pool_acc:.3f}; Evidently "
              f"{'installed' if peer else 'NOT installed (its column shows -)'}")

        def draw(n: int, seed: int, p0: float | None = None) -> np.ndarray:
            r = np.random.default_rng(seed)
            if p0 is None:
                return x_pool[r.integers(0, len(x_pool), n)]
            # Class 0 with probability p0. Within each class the images are dealt without
            # replacement (reshuffled when a class runs out), as a real stream of distinct
            # photos would be: drawn with replacement, the majority class of a small pool
            # (--model: about 50 images a class) repeats itself while the minority stays
            # distinct, and since drift tests count each distinct image once, the mix they
            # see is flattened towards 50/50 by the sampling, not by the monitor.
            pick0 = r.random(n) < p0
            out = np.empty(n, dtype=np.int64)
            for cls, mask in ((0, pick0), (1, ~pick0)):
                idx = np.flatnonzero(y_pool == cls)
                rounds = -(-int(mask.sum()) // len(idx)) or 1
                out[mask] = np.concatenate([r.permutation(idx) for _ in range(rounds)])[
                    : int(mask.sum())]
            return x_pool[out]

        shifts = {
            "darkened (x0.6)": darken(draw(window, 1), 0.6),
            "blurred (sigma 1 px)": blur(draw(window, 2), 1.0),
            "noisy (sigma 10)": add_noise(draw(window, 3), 10.0, seed=3),
            "flip + rotate 90": flip_rotate(draw(window, 5)),
            "JPEG quality 10": jpeg(draw(window, 6), 10),
            "zoomed crop (50%)": zoom_crop(draw(window, 7), 0.5),
            "grayscale": grayscale(draw(window, 8)),
            "class mix 90/10": draw(window, 4, p0=0.9),
        }
        results: dict[str, list[dict[str, Any]]] = {}
        for i, (name, images) in enumerate(shifts.items()):
            results[name] = window_result(store, bucket, f"bench-{i}", encode_pngs(images),
                                          predict, embedder, baseline, baseline_plain, grid)
        alarms = dict.fromkeys(METHODS, 0)
        by_feature: dict[str, int] = {}
        for w in range(windows):
            [row] = window_result(store, bucket, f"bench-null-{w}",
                                  encode_pngs(draw(window, 1000 + w)), predict, embedder,
                                  baseline, baseline_plain, (window,))
            for m in METHODS:
                alarms[m] += bool(row[m])
            for f in row["sconeflow"]:
                by_feature[f] = by_feature.get(f, 0) + 1
    _print_results(results, alarms, by_feature, windows, window, started)
    return 0 if _passed(results, alarms, windows, window) else 1


def _cell(n: int | None, installed: bool = True) -> str:
    return "-" if not installed else ("not seen" if n is None else str(n))


def _print_results(results: dict[str, list[dict[str, Any]]], alarms: dict[str, int],
                   by_feature: dict[str, int], windows: int, window: int,
                   started: float) -> None:
    installed = any(r["Evidently"] is not None for rows in results.values() for r in rows)
    sizes = ", ".join(str(r["n"]) for r in next(iter(results.values())))
    print(f"\nrequests to the first alarm (windows of {sizes} requests; 'not seen' = not "
          f"within {window})")
    print(f"{'shift':<22} {'features':>9} {'embedding':>10} {'sconeflow':>10} "
          f"{'Evidently':>10}  sconeflow flagged")
    for name, rows in results.items():
        cells = [first_alarm(rows, m) for m in METHODS]
        hit = next((r["sconeflow"] for r in rows if r["sconeflow"]), [])
        print(f"{name:<22} {_cell(cells[0]):>9} {_cell(cells[1]):>10} {_cell(cells[2]):>10} "
              f"{_cell(cells[3], installed):>10}  {', '.join(hit)}")
    print(f"\nfalse alarms over {windows} in-distribution windows of {window} requests:")
    for m in METHODS:
        if m == "Evidently" and not installed:
            print(f"  {m:<10} -")
            continue
        print(f"  {m:<10} {alarms[m]}/{windows} = {alarms[m] / max(windows, 1):.1%}")
    if by_feature:
        print("  sconeflow's false alarms by feature: "
              + ", ".join(f"{k} {v}" for k, v in sorted(by_feature.items())))
    print(f"({time.perf_counter() - started:.0f} s; sconeflow alpha {ALPHA_USED[0]}, "
          f"{EMBEDDING_FEATURE} by MMD)")


def _passed(results: dict[str, list[dict[str, Any]]], alarms: dict[str, int], windows: int,
            window: int) -> bool:
    ok = alarms["sconeflow"] / max(windows, 1) <= 0.05
    worse = []
    for name, rows in results.items():
        ours = first_alarm(rows, "sconeflow")
        ok &= ours is not None and ours <= window
        if rows[0]["Evidently"] is not None:
            theirs = first_alarm(rows, "Evidently")
            if theirs is not None and (ours is None or ours > theirs):
                worse.append(name)
    ok &= not worse
    print(f"\n{'PASS' if ok else 'FAIL'}: every shift flagged by sconeflow within {window} "
          f"requests, false alarms <= 5%, never later than Evidently"
          + (f" (later on: {', '.join(worse)})" if worse else ""))
    return ok


if __name__ == "__main__":
    sys.exit(main())
