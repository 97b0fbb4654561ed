"""Image-aware drift: the artifact's embedding output, the MMD permutation test, a window
the image statistics miss, the promise against ground truth, time axes from a second to a
week, and the whole report rendered in a real browser."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from sconeflow.config import Settings
from sconeflow.db import connect
from sconeflow.monitoring.baseline import (
    baseline_prefix,
    build_baseline,
    records_from_images,
    save_baseline,
)
from sconeflow.monitoring.embeddings import embed, load_embedder, mmd_test
from sconeflow.monitoring.features import compute_features
from sconeflow.monitoring.outcomes import format_ground_truth
from sconeflow.monitoring.plots import confidence_over_time, time_bins
from sconeflow.monitoring.report import render_report
from sconeflow.monitoring.runner import run_monitoring
from sconeflow.monitoring.simulate import (
    decode_pngs,
    encode_pngs,
    flip_rotate,
    write_capture,
    zoom_crop,
)
from sconeflow.serving.endpoints import resolve_model
from sconeflow.serving.inference import load_predictor, predict
from sconeflow.staging import parse_lst
from sconeflow.store import copy_prefix, open_store
from test_monitoring_support import CLASSES, staged_split, write_tiny_artifact

T0 = datetime(2025, 8, 22, 8, 0, 0, tzinfo=UTC)
CHROMIUM = "/usr/bin/chromium"


def test_export_adds_the_embedding_and_leaves_the_answer_unchanged(tmp_path: Path) -> None:
    """The second ONNX output is the head's input (flip-averaged); serving, which asks for
    probabilities alone, answers exactly as the torch graph does."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from sconeflow.serving.model import pack_artifact, prepare_model_dir
    from sconeflow.training.artifact import build_metadata, export_onnx
    from sconeflow.training.hyperparameters import Hyperparameters
    from sconeflow.training.model import ModelConfig, build_model
    from sconeflow.training.train import TrainResult

    torch.manual_seed(0)
    nets = [build_model(ModelConfig()).eval()]
    result = TrainResult(nets, ModelConfig(), 1.5, Hyperparameters(), [])
    onnx_bytes = export_onnx(result)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities", "embedding"]
    x = torch.randn(4, 3, 32, 32)
    probs, emb = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        net = nets[0]

        def feats(z: torch.Tensor) -> torch.Tensor:
            return torch.amax(net.blocks(net.stem(z)), dim=(2, 3))

        expected = (0.5 * (feats(x) + feats(x.flip(3)))).numpy()
        np.testing.assert_allclose(emb, expected, atol=1e-5)
        np.testing.assert_allclose(probs, result.inference_graph()(x).numpy(), atol=1e-6)
    meta = build_metadata(result, CLASSES)
    assert meta["embedding_tensor"]["shape"] == ["batch", 128]
    artifact = tmp_path / "model.tar.gz"
    artifact.write_bytes(pack_artifact(onnx_bytes, meta))
    model_dir = prepare_model_dir(artifact, tmp_path / "m")
    predictor = load_predictor(model_dir)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    got = predict(predictor, encode_pngs(pixels))
    assert got.shape == (3, 2)  # the endpoint's answer: probabilities only
    embedder, why = load_embedder(model_dir)
    assert embedder is not None and why == "" and embedder.dim == 128
    assert embed(embedder, [*encode_pngs(pixels), b"not an image"]).shape == (4, 128)


def test_an_artifact_without_the_output_has_no_embedder(tmp_path: Path) -> None:
    from sconeflow.serving.model import prepare_model_dir

    model_dir = prepare_model_dir(write_tiny_artifact(tmp_path / "m.tar.gz"), tmp_path / "m")
    embedder, why = load_embedder(model_dir)
    assert embedder is None and "no 'embedding' output" in why


def test_mmd_permutation_test_holds_its_level_and_sees_a_shift() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 32))
    p_null = [mmd_test(base, rng.normal(size=(40, 32)), permutations=400, seed=i).p_value
              for i in range(60)]
    assert np.mean(np.array(p_null) < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 60)
    shifted = rng.normal(size=(40, 32)) + np.r_[np.full(4, 0.8), np.zeros(28)]
    result = mmd_test(base, shifted)
    assert result.p_value < 0.001 and result.mmd2 > np.max(result.null[:100]) * 0.5
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd_test(base, shifted[:1])


@pytest.fixture(scope="module")
def model_dir(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's trained model (its graph exports the embedding), unpacked."""
    return resolve_model(trained_home, "test-job", tmp_path_factory.mktemp("emb") / "model")


def test_a_rotated_camera_is_seen_by_the_embedding_not_by_image_statistics(
    trained_home: Settings, settings: Settings, model_dir: Path
) -> None:
    store = open_store(settings)
    copy_prefix(open_store(trained_home), store, settings.bucket, "data/test")
    keys = sorted(k for k in store.list(settings.bucket, "data/test/") if k.endswith(".png"))
    embedder, _ = load_embedder(model_dir)
    records, names = records_from_images(store, settings.bucket, "data/test", model_dir,
                                         keys=keys[::2])  # fmt: skip
    save_baseline(store, settings.bucket, baseline_prefix("ep-monitor"),
                  build_baseline(compute_features(records, names, embedder=embedder)))
    predictor = load_predictor(model_dir)
    window = decode_pngs([store.get(settings.bucket, k) for k in keys[1::2][:60]])
    verdicts = {}
    for name, images in (("clean", window), ("rotated", flip_rotate(window))):
        pngs = encode_pngs(images)
        write_capture(store, settings.bucket, f"ep-{name}", pngs, predict(predictor, pngs),
                      start=T0, interval=timedelta(minutes=1))
        _, analysis = run_monitoring(
            store, settings.bucket, connect(settings.db_path), endpoint=f"ep-{name}",
            schedule="ep-monitor", since=T0, until=T0 + timedelta(hours=2),
            model_dir=model_dir, model_name="test-job")
        verdicts[name] = {d.feature: d.drifted for d in analysis.checks.drift}
    assert verdicts["clean"]["embedding"] is False
    assert verdicts["rotated"]["embedding"] is True
    for stat in ("brightness", "contrast", "saturation", "noise"):  # rotation-invariant
        assert verdicts["rotated"][stat] is False, stat


def test_time_bins_adapt_from_a_second_to_a_week() -> None:
    for span, width, bins in ((0.5, 1, 1), (8 * 3600, 1800, 17), (7 * 86400, 43200, 15)):
        times = [T0 + timedelta(seconds=span * i / 99) for i in range(100)]
        idx, starts, w = time_bins(times)
        assert w == timedelta(seconds=width) and len(starts) == bins, (span, w, len(starts))
        assert idx.min() == 0 and idx.max() == len(starts) - 1
        assert len({s.isoformat() for s in starts}) == len(starts)  # no repeated label
    burst = [T0] * 20  # 20 requests within one second: still a readable plot
    png = confidence_over_time(burst, np.full(20, 0.9), ["bicycle"] * 20, CLASSES, 0.93)
    assert png[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def full_report(trained_home: Settings, model_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    """A day of traffic mostly from a zoomed camera (after the first 30), with ground truth
    for every record and a promise in model.json that the traffic breaks."""
    root = tmp_path_factory.mktemp("full")
    settings = Settings(home=root / "home", store_uri=(root / "home" / "store").as_uri())
    store = open_store(settings)
    copy_prefix(open_store(trained_home), store, settings.bucket, "data/test")
    promised = root / "model"
    shutil.copytree(model_dir, promised)
    meta = json.loads((promised / "model.json").read_text())
    meta["selective"] = {"threshold": 0.5, "target_accuracy": 0.99, "confidence": 0.95,
                         "guaranteed": False, "coverage": 1.0, "data": {"split": "test"}}
    (promised / "model.json").write_text(json.dumps(meta))
    embedder, _ = load_embedder(promised)
    pngs, labels = staged_split(settings, "test")
    rows = parse_lst(store.get(settings.bucket, "data/test.lst").decode())
    keys = [f"data/test/{name}" for _, _, name in rows]  # .lst order, as pngs and labels
    records, names = records_from_images(store, settings.bucket, "data/test", promised,
                                         keys=keys[::2])  # fmt: skip
    save_baseline(store, settings.bucket, baseline_prefix("ep-monitor"),
                  build_baseline(compute_features(records, names, embedder=embedder)))
    images = decode_pngs(pngs[1::2])  # the other images, the same mix of classes
    images[30:] = zoom_crop(images[30:])
    traffic = encode_pngs(images)
    ids = [f"img-{i}" for i in range(100)]
    write_capture(store, settings.bucket, "ep", traffic, predict(load_predictor(promised),
                  traffic), start=T0, interval=timedelta(minutes=5), inference_ids=ids)
    truth = "\n".join(format_ground_truth(i, int(y)) for i, y in zip(ids, labels[1::2],
                                                                    strict=True))
    store.put(settings.bucket, "ground_truth/ep/2025/08/22/08/labels.jsonl", truth.encode())
    record, analysis = run_monitoring(
        store, settings.bucket, connect(settings.db_path), endpoint="ep",
        schedule="ep-monitor", since=T0, until=T0 + timedelta(days=1),
        ground_truth_prefix="ground_truth/ep/", model_dir=promised, model_name="test-job")
    summary = json.loads(store.get(settings.bucket, record.prefix + "summary.json"))
    return render_report(analysis, run=record).html, summary, root


def test_the_promise_is_checked_against_ground_truth(full_report: tuple[str, dict, Path]
                                                     ) -> None:
    html, summary, _ = full_report
    promise = summary["promise"]
    assert promise["threshold"] == 0.5 and promise["target_accuracy"] == 0.99
    result = promise["result"]
    assert result["labelled_passed"] == result["passed"] == 100  # every record labelled
    # A one-epoch model is far from 99% right: the promise is broken, and says by how much.
    assert result["selective_accuracy"] < 0.95 and result["upper_bound"] < 0.99
    assert result["broken"] is True
    violation = next(v for v in summary["violations"]
                     if v["feature_name"] == "selective_accuracy")
    assert violation["constraint_check_type"] == "LessThanThreshold"
    assert "promise" in html and "BROKEN" in html and 'alt="promise.png"' in html


def test_every_verdict_links_to_its_plot(full_report: tuple[str, dict, Path]) -> None:
    html, summary, _ = full_report
    ids = set(re.findall(r'id="([^"]+)"', html))
    links = re.findall(r'href="#([^"]+)"', html)
    tested = {d["feature"] for d in summary["drift"]}
    assert "embedding" in tested and len(links) == len(tested)
    assert set(links) <= ids, set(links) - ids
    assert 'alt="embedding_drift.png"' in html
    emb = next(d for d in summary["drift"] if d["feature"] == "embedding")
    assert emb["drifted"] and emb["method"] == "MMD", emb
    assert "no distance floor" in emb["decided_by"]


@pytest.mark.skipif(shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
                    reason="Debian chromium not installed (apt-get install chromium)")
def test_the_full_report_renders_in_a_real_browser(full_report: tuple[str, dict, Path]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    html, _, root = full_report
    page_file = root / "report.html"
    page_file.write_text(html, encoding="utf-8")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(root / "profile"), executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
            viewport={"width": 1200, "height": 900},
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri(), wait_until="load")
            loaded = page.eval_on_selector_all(
                "img", "els => els.every(e => e.complete && e.naturalWidth > 0)")
            page.click('a[href="#drift-embedding"]')  # a verdict's link lands on its plot
            target = page.evaluate("location.hash")
            page.screenshot(path=str(root / "report.png"), full_page=True)
        finally:
            context.close()
    assert loaded and errors == [] and target == "#drift-embedding"
    assert (root / "report.png").stat().st_size > 50_000
