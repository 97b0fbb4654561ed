"""Tests of sconeflow.training: hyperparameters, calibration, determinism, ONNX, artifact.

Fast by design (tiny nets, 1-2 epochs, a few dozen images). The ONNX parity test uses real
CIFAR-100 test images from the shared dev tarball when it exists next to the repository.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from sconeflow.errors import ConfigError, ModelError, UnsafeArchiveError  # noqa: E402
from sconeflow.serving.model import extract_artifact, read_meta  # noqa: E402
from sconeflow.training.artifact import (  # noqa: E402
    FORMAT,
    export_onnx,
    pack_artifact,
    write_artifact,
)
from sconeflow.training.augment import to_tensor  # noqa: E402
from sconeflow.training.budget import (  # noqa: E402
    MAX_PLANNED_EPOCHS,
    MIN_RETRAIN_EPOCHS,
    PLAN_SHARE,
    Costs,
    Phases,
    TrainingStopped,
    estimate_seconds,
    plan_epochs,
    validation_epochs,
)
from sconeflow.training.calibration import (  # noqa: E402
    ece_sampling_floor,
    errors_among_most_confident,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    softmax,
    threshold_table,
)
from sconeflow.training.hyperparameters import (  # noqa: E402
    HyperparameterError,
    Hyperparameters,
    parse_hyperparameters,
)
from sconeflow.training.model import ModelConfig, build_model, count_macs  # noqa: E402
from sconeflow.training.train import TrainResult, predict_logits, train  # noqa: E402

DEV_TARBALL = Path(__file__).resolve().parents[1].parent / "shared/data/cifar-100-python.tar.gz"
# One torch thread: on a busy shared machine two OpenMP threads wait on each other at every
# barrier and run 10x slower than one; results are as deterministic either way.
TINY = {"epochs": "2", "mini_batch_size": "16", "validation_fraction": "0.25", "num_threads": "1"}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray]:
    """48 images whose class is visible (class 1 has a bright left half)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 120, size=(48, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(48) % 2
    images[labels == 1, :, :16] += 120
    return images, labels


@pytest.fixture(scope="module")
def cifar_test() -> tuple[np.ndarray, np.ndarray]:
    """Real bicycle/motorcycle test images from the shared dev tarball (skip when absent)."""
    if not DEV_TARBALL.is_file():
        pytest.skip(f"dev tarball not found at {DEV_TARBALL}; ONNX parity on real images skipped")
    with tarfile.open(DEV_TARBALL) as tar:
        member = tar.extractfile("cifar-100-python/test")
        assert member is not None
        batch = _RestrictedUnpickler(member).load()
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = (np.asarray(batch[b"fine_labels"]) == 48).astype(np.int64)
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels


class _RestrictedUnpickler(pickle.Unpickler):
    """Only what a CIFAR batch holds: numpy array reconstruction and builtins containers."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("_codecs", "encode"),  # how protocol-2 pickles spell bytes
        }
    )

    def __init__(self, stream: io.IOBase) -> None:
        super().__init__(stream, encoding="bytes")

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return super().find_class(module, name)


@pytest.fixture(scope="module")
def tiny_result(synthetic: tuple[np.ndarray, np.ndarray]) -> TrainResult:
    images, labels = synthetic
    return train(images, labels, parse_hyperparameters(TINY))


# ---------------------------------------------------------------- hyperparameters


def test_defaults_are_ours_and_round_trip() -> None:
    hp = parse_hyperparameters({})
    assert hp == Hyperparameters()
    assert hp.optimizer == "nag" and hp.num_layers is None
    assert parse_hyperparameters(hp.to_strings()) == hp


def test_sagemaker_strings_parse() -> None:
    hp = parse_hyperparameters(
        {
            "num_classes": "2",
            "num_training_samples": "800",
            "image_shape": "3,32,32",
            "epochs": "30",
            "learning_rate": "0.1",
            "mini_batch_size": "32",
            "num_layers": "20",
            "optimizer": "sgd",
            "lr_scheduler_step": "10,20",
            "augmentation_type": "crop_color_transform",
            "early_stopping": "True",
            "top_k": "2",
        }
    )
    assert (hp.epochs, hp.learning_rate, hp.num_layers) == (30, 0.1, 20)
    assert hp.lr_scheduler_step == (10, 20) and hp.early_stopping is True
    assert hp.image_shape == (3, 32, 32)


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ({"epoch": "3"}, ["'epoch'", "unknown", "did you mean 'epochs'?"]),
        ({"learning_rate": "5"}, ["'learning_rate'", "'5'", "(0, 1]"]),
        ({"top_k": "1"}, ["'top_k'", "from 2"]),
        ({"beta_1": "1"}, ["'beta_1'", "[0, 1)", "moving"]),
        ({"max_runtime_in_seconds": "0"}, ["'max_runtime_in_seconds'", "from 1"]),
        ({"lr_scheduler_step": "10"}, ["'lr_scheduler_step'", "epochs"]),
        ({"resize": "64"}, ["'resize'", "never resizes"]),
        ({"kv_store": "nccl"}, ["'kv_store'", "dist_sync"]),
        ({"epochs": "0"}, ["'epochs'", "'0'", "from 1"]),
        ({"learning_rate": "fast"}, ["'learning_rate'", "'fast'", "number"]),
        ({"optimizer": "lion"}, ["'optimizer'", "'lion'", "sgd"]),
        ({"num_layers": "19"}, ["'num_layers'", "'19'", "152"]),
        ({"image_shape": "1,32,32"}, ["'image_shape'", "3,H,W"]),
        ({"use_pretrained_model": "1"}, ["'use_pretrained_model'", "pretrained"]),
        ({"lr_scheduler_step": "20,10"}, ["'lr_scheduler_step'", "increasing"]),
        ({"top_k": "5"}, ["'top_k'", "num_classes"]),
    ],
)
def test_bad_hyperparameters_name_key_value_and_expectation(
    raw: dict[str, str], fragments: list[str]
) -> None:
    with pytest.raises(HyperparameterError) as info:
        parse_hyperparameters(raw)
    assert isinstance(info.value, ConfigError)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_documented_ranges_and_names_are_accepted() -> None:
    hp = parse_hyperparameters(
        {"learning_rate": "1", "momentum": "1", "resize": "32", "kv_store": "dist_sync",
         "top_k": "2", "epochs": "", "max_runtime_in_seconds": "86400"}
    )  # fmt: skip
    assert hp.learning_rate == 1.0 and hp.momentum == 1.0 and hp.epochs is None
    assert hp.max_runtime_in_seconds == 86400
    assert Hyperparameters().max_runtime_in_seconds == 360  # the stated default budget


def test_a_misspelt_name_suggests_one_name_not_all() -> None:
    with pytest.raises(HyperparameterError) as info:
        parse_hyperparameters({"learning_rat": "0.1"})
    message = str(info.value)
    assert "did you mean 'learning_rate'?" in message
    assert "augmentation_type" not in message  # no dump of every name
    with pytest.raises(HyperparameterError, match="such as epochs"):
        parse_hyperparameters({"zzz": "1"})  # nothing close: where to look instead


def test_num_training_samples_must_match_data(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = synthetic
    with pytest.raises(HyperparameterError, match="num_training_samples"):
        train(images, labels, parse_hyperparameters({**TINY, "num_training_samples": "99"}))


# ---------------------------------------------------------------- the time budget

SHAPE = Phases(holdout_steps=11, full_steps=13, members=1, validate_every_epoch=False)


def test_plan_fills_the_budget_up_to_the_recipe() -> None:
    fast = Costs(step_seconds=0.035, validation_seconds=0.13)  # an AVX-512 2-core VM
    plan = plan_epochs(fast, SHAPE, budget=300, time_left=298, epochs=None, retrain_full=True)
    assert (plan.epochs, plan.retrain_full, plan.planned) == (MAX_PLANNED_EPOCHS, True, True)
    assert plan.estimated_seconds <= PLAN_SHARE * 298
    slow = Costs(step_seconds=0.16, validation_seconds=0.6)  # about 4x slower (AVX2 only)
    plan = plan_epochs(slow, SHAPE, budget=300, time_left=298, epochs=None, retrain_full=True)
    assert MIN_RETRAIN_EPOCHS <= plan.epochs < MAX_PLANNED_EPOCHS and plan.retrain_full
    assert plan.estimated_seconds <= PLAN_SHARE * (298 - 3)
    more = estimate_seconds(plan.epochs + 1, True, SHAPE, slow)
    assert more > PLAN_SHARE * (298 - 3)  # the largest count that fits


def test_plan_keeps_one_fit_when_two_would_be_too_short() -> None:
    slow = Costs(step_seconds=1.0, validation_seconds=1.0)
    plan = plan_epochs(slow, SHAPE, budget=300, time_left=298, epochs=None, retrain_full=True)
    assert not plan.retrain_full and plan.epochs >= MIN_RETRAIN_EPOCHS
    with pytest.raises(HyperparameterError, match="max_runtime_in_seconds"):
        plan_epochs(slow, SHAPE, budget=10, time_left=9, epochs=None, retrain_full=True)


def test_explicit_epochs_are_exact_or_refused_before_training() -> None:
    costs = Costs(step_seconds=0.1, validation_seconds=0.1)
    plan = plan_epochs(costs, SHAPE, budget=300, time_left=300, epochs=7, retrain_full=True)
    assert (plan.epochs, plan.planned) == (7, False)
    with pytest.raises(HyperparameterError) as info:
        plan_epochs(costs, SHAPE, budget=300, time_left=300, epochs=1000, retrain_full=True)
    assert "'epochs'" in str(info.value) and "raise max_runtime_in_seconds" in str(info.value)


def test_validation_epochs() -> None:
    assert validation_epochs(25, False) == [0, 9, 19, 24]
    assert validation_epochs(1, False) == [0]
    assert validation_epochs(4, True) == [0, 1, 2, 3]


class JumpClock:
    """The real clock plus an offset that a test moves forward (a machine that stalls)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.perf_counter() + self.offset


def _stall_after(clock: JumpClock, checks: int, seconds: float) -> Any:
    """should_stop that moves `clock` forward once, at its `checks`-th call."""
    calls = [0]

    def should_stop() -> None:
        calls[0] += 1
        if calls[0] == checks:
            clock.offset += seconds
        return None

    return should_stop


def test_planned_training_records_budget_plan_seconds_and_flops(
    synthetic: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = synthetic
    hp = parse_hyperparameters({**TINY, "epochs": ""})
    bar: list[tuple[str, float, float | None, str]] = []
    notices: list[str] = []
    result = train(images, labels, hp, max_epochs=3, notice=notices.append,
                   progress=lambda s, d, t, detail="": bar.append((s, d, t, detail)))  # fmt: skip
    m = result.metrics
    assert m["epochs_planned"] == 3 and m["epochs_planned_by"] == "budget"
    assert m["max_runtime_in_seconds"] == 360 and m["final_fit"] == "full"
    assert [h.phase for h in result.history] == ["holdout"] * 3 + ["full"] * 3
    assert result.hyperparameters.epochs == 3  # model.json can rebuild it exactly
    assert m["flops_per_epoch"] == 6 * count_macs(build_model(ModelConfig())) * 48
    assert m["train_flops"] > 6 * m["flops_per_epoch"]  # type: ignore[operator]
    assert m["seconds_per_epoch"] > 0 and m["estimated_train_seconds"] > 0  # type: ignore[operator]
    assert notices and notices[0].startswith("Plan: 3 + 3 epochs")
    assert [b[1] for b in bar] == [1, 2, 3, 4, 5, 6] and {b[2] for b in bar} == {6}
    assert "epoch 1/3 (held-out fit), train acc" in bar[0][3]
    assert {b[0] for b in bar} == {"train"}  # one bar


def test_explicit_epochs_mean_exactly_that_many(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = synthetic
    result = train(images, labels, parse_hyperparameters(TINY))
    assert result.metrics["epochs_planned_by"] == "hyperparameter"
    assert len(result.history) == 4 and result.metrics["epochs_run"] == 2
    with pytest.raises(HyperparameterError, match="'epochs'"):
        train(images, labels, parse_hyperparameters({**TINY, "epochs": "1000",
                                                    "max_runtime_in_seconds": "1"}))  # fmt: skip


def test_left_out_threads_are_chosen_by_measuring(
    synthetic: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = synthetic
    result = train(images, labels, parse_hyperparameters({**TINY, "num_threads": ""}))
    m = result.metrics
    assert result.hyperparameters.num_threads == m["num_threads"] in (1, 2)
    assert "probe_step_seconds_1_thread" in m
    if (os.cpu_count() or 1) >= 2:  # both were measured, and the faster one trained
        two = m["probe_step_seconds_2_threads"]
        one = m["probe_step_seconds_1_thread"]
        assert m["num_threads"] == (2 if two <= one else 1)  # type: ignore[operator]


def test_a_held_out_fit_past_the_deadline_stops_the_job(
    synthetic: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = synthetic
    clock = JumpClock()
    with pytest.raises(TrainingStopped) as info:
        train(images, labels, parse_hyperparameters(TINY), clock=clock,
              should_stop=_stall_after(clock, 2, 10_000))  # fmt: skip
    assert info.value.secondary_status == "MaxRuntimeExceeded"
    assert "max_runtime_in_seconds=360" in str(info.value)


def test_a_machine_that_slows_down_shortens_a_planned_schedule_and_keeps_a_model(
    synthetic: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = synthetic
    hp = parse_hyperparameters({k: v for k, v in TINY.items() if k != "epochs"}
                               | {"max_runtime_in_seconds": "120"})  # fmt: skip
    clock = JumpClock()
    calls = [0]

    def slower() -> None:  # from the 10th step on, every step takes 2 s more than measured
        calls[0] += 1
        if calls[0] >= 10:
            clock.offset += 2.0
        return None

    lines: list[str] = []
    result = train(images, labels, hp, clock=clock, log=lines.append, should_stop=slower,
                   max_epochs=30)  # fmt: skip
    planned = result.metrics["epochs_planned"]
    assert planned == 30  # the probe saw a fast machine
    shortened = [line for line in lines if line.startswith("Schedule shortened from 30 to")]
    assert shortened, lines
    held_out = [h for h in result.history if h.phase == "holdout"]
    assert 3 < len(held_out) < 30 and result.metrics["epochs_run"] == len(held_out)
    assert result.temperature != 1.0 and result.metrics["final_fit"] == "holdout"
    assert result.metrics["train_seconds"] <= 120  # type: ignore[operator]


def test_a_probe_that_overestimates_is_corrected_by_the_first_epochs(
    synthetic: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's few steps can run slower than the fit's (warm-up): the first fit is planned
    again from its own epochs 2 and 3, so the budget is used rather than left idle."""
    from sconeflow.training import train as train_module

    real = train_module._measure

    def pessimistic(*args: Any, **kwargs: Any) -> Any:  # 0.7 s a step: 10x too slow or more
        return replace(real(*args, **kwargs), step_seconds=0.7)

    monkeypatch.setattr(train_module, "_measure", pessimistic)
    images, labels = synthetic
    hp = parse_hyperparameters({k: v for k, v in TINY.items() if k != "epochs"}
                               | {"max_runtime_in_seconds": "150"})  # fmt: skip
    lines: list[str] = []
    bar: list[tuple[Any, ...]] = []
    result = train(images, labels, hp, log=lines.append, max_epochs=30,
                   progress=lambda *a, **k: bar.append((*a, k.get("detail"))))  # fmt: skip
    planned = result.metrics["epochs_planned"]
    assert 3 < planned < 30, planned  # the pessimistic probe planned fewer epochs
    assert f"Plan revised from {planned} to 30 epochs (held-out fit)" in " ".join(lines)
    assert [h.phase for h in result.history] == ["holdout"] * 30 + ["full"] * 30, lines[0]
    assert bar[-1][1] == bar[-1][2] == 60  # the one bar's total followed the revision


def test_a_retrain_that_no_longer_fits_keeps_the_held_out_model(
    synthetic: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = synthetic
    hp = parse_hyperparameters(TINY)  # 3 steps per held-out epoch, 2 epochs
    clock = JumpClock()
    notices: list[str] = []
    result = train(images, labels, hp, clock=clock, notice=notices.append,
                   should_stop=_stall_after(clock, 6, 290))  # fmt: skip
    assert result.metrics["final_fit"] == "holdout"
    assert [h.phase for h in result.history] == ["holdout", "holdout"]
    assert any("skipped" in n and "keeping the held-out model" in n for n in notices)
    # ... and one that runs out of time midway falls back to it, complete and calibrated
    clock = JumpClock()
    notices = []
    result = train(images, labels, hp, clock=clock, notice=notices.append,
                   should_stop=_stall_after(clock, 8, 10_000))  # fmt: skip
    assert result.metrics["final_fit"] == "holdout" and result.temperature != 1.0
    assert any("ran out of" in n for n in notices)


def test_a_stop_request_stops_between_steps(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = synthetic
    with pytest.raises(TrainingStopped, match="asked") as info:
        train(images, labels, parse_hyperparameters(TINY), should_stop=lambda: "asked")
    assert info.value.secondary_status == "Stopped"


# ---------------------------------------------------------------- calibration


def test_ece_on_known_inputs() -> None:
    labels = np.array([0] * 8 + [1] * 2)
    calibrated = np.tile([0.8, 0.2], (10, 1))  # 80% confident, 80% right
    assert expected_calibration_error(calibrated, labels) == pytest.approx(0.0)
    overconfident = np.tile([1.0, 0.0], (10, 1))  # 100% confident, 80% right
    assert expected_calibration_error(overconfident, labels) == pytest.approx(0.2)
    bins = reliability_bins(overconfident, labels)
    assert len(bins) == 15 and bins[-1].count == 10 and bins[-1].accuracy == pytest.approx(0.8)


def test_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=4.0, size=(20_000, 2))
    truth = softmax(logits, temperature=2.0)
    labels = (rng.random(len(logits)) < truth[:, 1]).astype(np.int64)
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.05)
    assert fit_temperature(logits * 3, labels) == pytest.approx(6.0, rel=0.05)


def test_threshold_table_counts_passes_and_accuracy() -> None:
    probs = np.array([[0.99, 0.01], [0.95, 0.05], [0.6, 0.4], [0.1, 0.9]])
    labels = np.array([0, 1, 0, 1])
    rows = {r.threshold: r for r in threshold_table(probs, labels, (0.5, 0.93, 0.999))}
    assert rows[0.5].passed == 4 and rows[0.5].accuracy_on_passed == pytest.approx(0.75)
    assert rows[0.93].passed == 2 and rows[0.93].accuracy_on_passed == pytest.approx(0.5)
    assert rows[0.999].passed == 0 and np.isnan(rows[0.999].accuracy_on_passed)


def test_ece_sampling_floor_shrinks_with_more_images_and_vanishes_when_certain() -> None:
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0.55, 1.0, 2000)
    probs = np.stack([p1, 1 - p1], axis=1)
    small = ece_sampling_floor(probs[:200], levels=(0.03,), simulations=300)
    large = ece_sampling_floor(probs, levels=(0.03,), simulations=300)
    assert 0.02 < small.mean < 0.08 and small.std > 0
    assert large.mean < small.mean / 2  # the bias is a small-sample effect
    assert large.p_at_most[0.03] > small.p_at_most[0.03]
    certain = ece_sampling_floor(np.tile([[1.0, 0.0]], (50, 1)), simulations=20)
    assert certain.mean == 0.0 and certain.p_at_most[0.03] == 1.0


def test_errors_among_most_confident_counts_the_top_share() -> None:
    probs = np.array([[0.99, 0.01], [0.02, 0.98], [0.9, 0.1], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([1, 1, 0, 1, 1])  # the most confident one is wrong
    assert errors_among_most_confident(probs, labels, 0.4) == 1
    assert errors_among_most_confident(probs, labels, 0.8) == 2
    assert errors_among_most_confident(probs, labels, 1.0) == 2


# ---------------------------------------------------------------- training


def test_same_seed_same_result(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = synthetic
    hp = parse_hyperparameters(TINY)
    lines: list[str] = []
    first = train(images, labels, hp, log=lines.append)
    second = train(images, labels, hp)
    assert first.temperature == second.temperature
    assert [m.train_loss for m in first.history] == [m.train_loss for m in second.history]
    x = to_tensor(images[:8])
    assert np.array_equal(predict_logits(first.nets, x, True), predict_logits(second.nets, x, True))
    other = train(images, labels, parse_hyperparameters({**TINY, "seed": "1"}))
    assert [m.train_loss for m in other.history] != [m.train_loss for m in first.history]
    assert "Epoch[0] Validation-accuracy=" in "\n".join(lines)
    assert any(line.startswith("Epoch[1] Time cost=") for line in lines)


def test_resnet_option_builds_and_counts() -> None:
    net = build_model(ModelConfig(family="resnet", depth=20))
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    assert count_macs(build_model(ModelConfig())) == 24_256_768  # the docstring's number


# ---------------------------------------------------------------- ONNX and artifact


def test_onnx_matches_pytorch_on_real_images(
    tiny_result: TrainResult, cifar_test: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = cifar_test
    x = to_tensor(images[:64])
    with torch.no_grad():
        expected = tiny_result.inference_graph()(x).numpy()
    session = ort.InferenceSession(export_onnx(tiny_result), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"input": x.contiguous().numpy()})[0]
    assert got.shape == (64, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    one = session.run(["probabilities"], {"input": x[:1].contiguous().numpy()})[0]
    np.testing.assert_allclose(one, expected[:1], atol=1e-5)  # dynamic batch


def _load(blob: bytes, tmp_path: Path) -> tuple[bytes, dict[str, Any]]:
    """Read an artifact the way serving does (the one reader of model.tar.gz)."""
    path = tmp_path / "model.tar.gz"
    path.write_bytes(blob)
    folder = extract_artifact(path, tmp_path / "model")
    return (folder / "model.onnx").read_bytes(), read_meta(folder).raw


def test_artifact_round_trip(tiny_result: TrainResult, tmp_path: Path) -> None:
    blob = write_artifact(tiny_result, ["bicycle", "motorcycle"], {"train.lst": "sha256:abc"})
    assert blob == write_artifact(
        tiny_result, ["bicycle", "motorcycle"], {"train.lst": "sha256:abc"}
    )
    onnx_bytes, meta = _load(blob, tmp_path)
    assert meta["format"] == FORMAT
    assert meta["classes"] == ["bicycle", "motorcycle"]
    assert meta["temperature"] == tiny_result.temperature
    assert meta["output"] == "probabilities"
    assert meta["training_data"] == {"train.lst": "sha256:abc"}
    assert parse_hyperparameters(meta["hyperparameters"]) == tiny_result.hyperparameters
    assert ModelConfig.from_dict(meta["model_config"]) == tiny_result.model_config
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})[0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ModelError, match="class names"):
        write_artifact(tiny_result, ["only-one"])


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return raw.getvalue()


def _file(name: str, data: bytes = b"{}") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, "/etc/passwd"
    return info, b""


def _dir(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, b""


@pytest.mark.parametrize(
    "blob",
    [
        _tar(_file("../model.json")),
        _tar(_file("/etc/model.json")),
        _tar(_file("a/../../model.json")),
        _tar(_file("C:\\model.json")),
        _tar(_link("model.onnx", tarfile.SYMTYPE)),
        _tar(_link("model.onnx", tarfile.LNKTYPE)),
        _tar(_dir("models")),
        _tar(*[_file(f"f{i}") for i in range(20)]),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "backslash", "symlink", "hardlink", "dir", "many"],
)
def test_unsafe_archives_are_refused(blob: bytes, tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchiveError):
        _load(blob, tmp_path)


def test_oversized_member_refused_before_reading(tmp_path: Path) -> None:
    info, _ = _file("model.onnx")
    info.size = 2**40  # a header that lies; no data follows
    raw = io.BytesIO()
    raw.write(info.tobuf(format=tarfile.GNU_FORMAT))
    # refused while listing headers, before any data is read or written
    with pytest.raises((UnsafeArchiveError, ModelError)):
        _load(gzip.compress(raw.getvalue()), tmp_path)
    assert not (tmp_path / "model" / "model.onnx").exists()


def test_broken_or_incomplete_artifacts_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a readable"):
        _load(b"not a tarball", tmp_path)
    with pytest.raises(ModelError, match="lacks model.onnx"):
        _load(_tar(_file("model.json")), tmp_path)
    with pytest.raises(ModelError, match="classes"):
        _load(pack_artifact(b"onnx", {"format": FORMAT}), tmp_path)
    bad_json = _tar(_file("model.onnx", b"x"), _file("model.json", b"{nope"))
    with pytest.raises(ModelError, match="JSON"):
        _load(bad_json, tmp_path)
