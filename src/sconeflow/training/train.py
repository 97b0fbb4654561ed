"""Training loop: images in, trained nets + calibration temperature out.

Default recipe (the defaults of `Hyperparameters`): the compact net of model.py (24.3 M MACs,
294k parameters), 200 epochs, batch 64, SGD-Nesterov momentum 0.9, peak lr 0.05 with 10%
linear warmup then cosine to 0, weight decay 5e-4 on conv/linear weights, no label smoothing;
augmentation = random mirror + reflect-padded translation by up to 4 px + a 12x12 cutout, all
as batch tensor ops; flip-TTA inside the exported graph. The temperature is fitted on a
stratified, seeded 15% held out of the training images; then the net is retrained on all of
them with that temperature (`retrain_full`).
Measured (benchmarks/train_bench.py, 2-core AMD EPYC VM, seeds 0-2, dev tarball: 800 train,
200 test): test accuracy 0.940 / 0.930 / 0.920 (mean 0.930), ECE 0.038 / 0.042 / 0.031, at
threshold 0.93 pass share 0.830 / 0.795 / 0.620 with accuracy 0.970 / 0.981 / 0.976 on those
passed, about 200 s per job (without retraining: 0.915 mean accuracy in 95 s). The
reference's settings on ResNet-20 reach 0.790 (ECE 0.161).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sconeflow.errors import DataError
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.training.calibration import (
    accuracy,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
    threshold_table,
)
from sconeflow.training.hyperparameters import HyperparameterError, Hyperparameters
from sconeflow.training.model import InferenceGraph, ModelConfig, build_model

# Per-channel statistics of CIFAR-100 bicycle+motorcycle training images, on pixel/255.
MEAN = (0.529, 0.514, 0.488)
STD = (0.260, 0.259, 0.269)

LogFn = Callable[[str], None]


def _no_log(line: str) -> None:
    """The default: log nothing."""


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # from 0, as in the built-in algorithm's log
    phase: str  # "holdout" (validation part held out) or "full" (retrain on everything)
    train_accuracy: float  # on augmented batches, as the built-in algorithm reports it
    train_loss: float
    seconds: float
    validation_accuracy: float | None  # None when there is no held-out data


@dataclass
class TrainResult:
    """Trained nets (eval mode), their config, the temperature and what was measured."""

    nets: list[nn.Module]
    model_config: ModelConfig
    temperature: float
    hyperparameters: Hyperparameters
    history: list[EpochMetrics]
    metrics: dict[str, float | int | str | list[dict[str, float]]] = field(default_factory=dict)

    def inference_graph(self) -> InferenceGraph:
        """Normalised images -> calibrated probabilities; what artifact.py exports."""
        return InferenceGraph(self.nets, self.temperature, self.hyperparameters.flip_tta).eval()


# ---------------------------------------------------------------- data and augmentation


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W), channels_last in memory."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right. x: (B, C, H, W)."""
    mask = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def translate(x: torch.Tensor, gen: torch.Generator, pixels: int) -> torch.Tensor:
    """Shift each image by up to `pixels` in x and y, filling with reflected edges."""
    if pixels == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4, mode="reflect")  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pixels + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pixels + 1, (b,), generator=gen)
    rows = (dy.view(-1, 1) + torch.arange(h).view(1, -1)).view(b, 1, h, 1)
    cols = (dx.view(-1, 1) + torch.arange(w).view(1, -1)).view(b, 1, 1, w)
    batch = torch.arange(b).view(b, 1, 1, 1)
    chan = torch.arange(x.shape[1]).view(1, -1, 1, 1)
    return padded[batch, chan, rows, cols]


def cutout(x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
    """Zero (= the mean colour, inputs are normalised) a size x size square per image."""
    if size == 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1), generator=gen)
    cx = torch.randint(0, w, (b, 1), generator=gen)
    ys = (torch.arange(h).view(1, -1) - cy).abs() <= size // 2  # (B, H)
    xs = (torch.arange(w).view(1, -1) - cx).abs() <= size // 2  # (B, W)
    return x.masked_fill(ys.view(b, 1, h, 1) & xs.view(b, 1, 1, w), 0.0)


def color_jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 0.3) -> torch.Tensor:
    """Random brightness, contrast and saturation, each scaled by 1 +- strength."""
    b = x.shape[0]

    def factor() -> torch.Tensor:
        return 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * strength

    x = x * factor()  # brightness (about the mean colour, since inputs are normalised)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean  # contrast
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * factor() + gray  # saturation


def affine(x: torch.Tensor, gen: torch.Generator, degrees: float = 10, scale: float = 0.1):
    """Random rotation (+-degrees), zoom (1 +- scale) and aspect change; reflected borders."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(degrees)
    zoom = 1 + (torch.rand(b, 2, generator=gen) * 2 - 1) * scale  # per axis: aspect too
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / zoom[:, 0]
    theta[:, 0, 1] = -torch.sin(angle) / zoom[:, 0]
    theta[:, 1, 0] = torch.sin(angle) / zoom[:, 1]
    theta[:, 1, 1] = torch.cos(angle) / zoom[:, 1]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)


def augment(x: torch.Tensor, gen: torch.Generator, hp: Hyperparameters) -> torch.Tensor:
    """The batch augmentation named by `hp.augmentation_type` (SageMaker's crop* names)."""
    kind = hp.augmentation_type
    if kind == "none":
        return x
    x = translate(flip(x, gen), gen, hp.translate if kind == "flip_translate" else 4)
    if kind in ("crop_color", "crop_color_transform"):
        x = color_jitter(x, gen)
    if kind == "crop_color_transform":
        x = affine(x.contiguous(), gen)
    return cutout(x, gen, hp.cutout).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- optimisation


def _optimizer(net: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights only; BatchNorm and biases are not decayed."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": hp.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    lr = hp.learning_rate
    if hp.optimizer in ("sgd", "nag"):
        return torch.optim.SGD(
            groups, lr=lr, momentum=hp.momentum, nesterov=hp.optimizer == "nag" and hp.momentum > 0
        )
    if hp.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=lr, betas=(hp.beta_1, hp.beta_2), eps=hp.eps)
    return torch.optim.RMSprop(groups, lr=lr, alpha=hp.gamma, eps=hp.eps, momentum=hp.momentum)


def _lr_factor(hp: Hyperparameters, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    if hp.lr_scheduler_step:  # SageMaker's step decay, at epoch boundaries
        epoch = step // steps_per_epoch
        return hp.lr_scheduler_factor ** sum(epoch >= s for s in hp.lr_scheduler_step)
    total = hp.epochs * steps_per_epoch
    warmup = int(hp.warmup_fraction * total)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _channels_last(net: nn.Module) -> nn.Module:
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


class _Member:
    """One net of the ensemble with its optimiser, schedule, EMA copy and random stream."""

    def __init__(self, hp: Hyperparameters, config: ModelConfig, index: int, steps: int):
        torch.manual_seed(hp.seed * 1000 + index)
        self.net = _channels_last(build_model(config))
        self.ema = _channels_last(build_model(config))
        self.ema.load_state_dict(self.net.state_dict())
        self.gen = torch.Generator().manual_seed(hp.seed * 1000 + index)
        self.opt = _optimizer(self.net, hp)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: _lr_factor(hp, step, steps)
        )
        self.step = 0

    def final(self, hp: Hyperparameters) -> nn.Module:
        return (self.ema if hp.ema_decay > 0 else self.net).eval()

    def update_ema(self, decay: float) -> None:
        decay = min(decay, (1 + self.step) / (10 + self.step))  # short warmup of the average
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
            for eb, b in zip(self.ema.buffers(), self.net.buffers(), strict=True):
                eb.copy_(b)  # BatchNorm running statistics follow the live net


def _train_epoch(
    member: _Member, x: torch.Tensor, y: torch.Tensor, hp: Hyperparameters, loss_fn: nn.Module
) -> tuple[int, float]:
    """One pass over (x, y) in shuffled mini-batches; returns (correct, summed loss)."""
    member.net.train()
    n, bs = len(y), hp.mini_batch_size
    order = torch.randperm(n, generator=member.gen)
    correct, loss_sum = 0, 0.0
    for start in range(0, n, bs):
        idx = order[start : start + bs]
        if len(idx) < 2:  # BatchNorm needs two images; drop a lone straggler
            continue
        xb, yb = augment(x[idx], member.gen, hp), y[idx]
        out = member.net(xb)  # (B, classes)
        loss = loss_fn(out, yb)
        member.opt.zero_grad(set_to_none=True)
        loss.backward()
        member.opt.step()
        member.sched.step()
        member.step += 1
        if hp.ema_decay > 0:
            member.update_ema(hp.ema_decay)
        correct += int((out.argmax(1) == yb).sum())
        loss_sum += float(loss.detach()) * len(idx)
    return correct, loss_sum


@torch.no_grad()
def predict_logits(
    nets: list[nn.Module], x: torch.Tensor, flip_tta: bool, batch: int = 500
) -> np.ndarray:
    """Ensemble logits (N, classes) as the exported graph computes them, before temperature."""
    graph = InferenceGraph(nets, 1.0, flip_tta).eval()
    parts = [graph.logits(x[i : i + batch]) for i in range(0, len(x), batch)]
    return torch.cat(parts).double().numpy()


def model_config_for(hp: Hyperparameters) -> ModelConfig:
    if hp.num_layers is None:
        return ModelConfig(num_classes=hp.num_classes)
    return ModelConfig(family="resnet", num_classes=hp.num_classes, depth=hp.num_layers)


def _split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_index, validation_index), the same for the same seed and labels."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        cut = round(fraction * len(members))
        val_idx.append(members[:cut])
        train_idx.append(members[cut:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def _fit(
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor | None,
    y_val: np.ndarray | None,
    hp: Hyperparameters,
    config: ModelConfig,
    phase: str,
    log: LogFn,
    progress: ProgressFn,
) -> tuple[list[nn.Module], list[EpochMetrics]]:
    """Train `hp.ensemble_size` nets in lockstep, one epoch each per round; log per epoch."""
    steps = sum(1 for s in range(0, len(y), hp.mini_batch_size) if len(y) - s >= 2)
    members = [_Member(hp, config, i, steps) for i in range(hp.ensemble_size)]
    weight = None
    if hp.use_weighted_loss:
        counts = torch.bincount(y, minlength=hp.num_classes).clamp(min=1).float()
        weight = counts.sum() / (hp.num_classes * counts)  # inverse class frequency
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing)
    history: list[EpochMetrics] = []
    best, best_epoch = -1.0, 0
    for epoch in range(hp.epochs):
        start = time.perf_counter()
        correct, loss_sum = 0, 0.0
        for member in members:
            c, s = _train_epoch(member, x, y, hp, loss_fn)
            correct, loss_sum = correct + c, loss_sum + s
        seen = len(members) * len(y)
        seconds = time.perf_counter() - start
        val_acc = None
        if x_val is not None and y_val is not None:
            nets = [m.final(hp) for m in members]
            val_acc = accuracy(predict_logits(nets, x_val, hp.flip_tta), y_val)
        history.append(
            EpochMetrics(epoch, phase, correct / seen, loss_sum / seen, seconds, val_acc)
        )
        # The built-in algorithm's exact log lines (tools parse them with regexes).
        log(f"Epoch[{epoch}] Train-accuracy={correct / seen:.6f}")
        log(f"Epoch[{epoch}] Time cost={seconds:.3f}")
        if val_acc is not None:
            log(f"Epoch[{epoch}] Validation-accuracy={val_acc:.6f}")
        progress(f"train ({phase})", epoch + 1, hp.epochs)
        if hp.early_stopping and val_acc is not None:
            if val_acc > best + hp.early_stopping_tolerance:
                best, best_epoch = val_acc, epoch
            elif (
                epoch + 1 >= hp.early_stopping_min_epochs
                and epoch - best_epoch >= hp.early_stopping_patience
            ):
                log(
                    f"Early stopping at epoch {epoch}: best Validation-accuracy={best:.6f} "
                    f"at epoch {best_epoch}"
                )
                break
    return [m.final(hp) for m in members], history


def _check_inputs(images: np.ndarray, labels: np.ndarray, hp: Hyperparameters, what: str) -> None:
    _, h, w = hp.image_shape
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, 3):
        raise DataError(
            f"{what}: expected uint8 images of shape (N, {h}, {w}, 3) to match image_shape "
            f"'3,{h},{w}', got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),):
        raise DataError(
            f"{what}: expected one label per image ({len(images)}), got shape {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= hp.num_classes):
        raise DataError(
            f"{what}: labels must lie in [0, num_classes={hp.num_classes}), got "
            f"{labels.min()}..{labels.max()}; set num_classes or fix the .lst labels"
        )


def train(
    images: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters | None = None,
    *,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    log: LogFn = _no_log,
    progress: ProgressFn = no_progress,
) -> TrainResult:
    """Train on uint8 images (N, H, W, 3) with integer labels (N,); calibrate; return nets.

    Calibration data: `val_images`/`val_labels` when given, otherwise a stratified
    `hp.validation_fraction` of the training images held out (seeded by `hp.seed`). The
    temperature is fitted on held-out predictions only; with `hp.retrain_full` (and no
    explicit validation data) the nets are then retrained on all images for the same number
    of epochs and keep that temperature. Same seed, data and thread count -> same result.
    """
    hp = hp or Hyperparameters()
    labels = np.asarray(labels, dtype=np.int64)
    _check_inputs(images, labels, hp, "training data")
    if hp.num_training_samples is not None and hp.num_training_samples != len(labels):
        raise HyperparameterError(
            f"hyperparameter 'num_training_samples': got {hp.num_training_samples}, but the "
            f"training channel holds {len(labels)} images; set it to {len(labels)}"
        )
    explicit_val = val_images is not None and val_labels is not None
    cal_x: np.ndarray | None
    cal_y: np.ndarray | None
    if val_images is not None and val_labels is not None:
        val_labels = np.asarray(val_labels, dtype=np.int64)
        _check_inputs(val_images, val_labels, hp, "validation data")
        fit_x, fit_y, cal_x, cal_y = images, labels, val_images, val_labels
    elif hp.validation_fraction > 0:
        train_idx, val_idx = _split(labels, hp.validation_fraction, hp.seed)
        fit_x, fit_y = images[train_idx], labels[train_idx]
        cal_x, cal_y = images[val_idx], labels[val_idx]
    else:
        fit_x, fit_y, cal_x, cal_y = images, labels, None, None
    if hp.early_stopping and cal_x is None:
        raise HyperparameterError(
            "hyperparameter 'early_stopping': got true with no validation data, expected "
            "validation_fraction above 0 or val_images/val_labels passed to train"
        )

    config = model_config_for(hp)
    started = time.perf_counter()
    with _torch_settings(hp.num_threads):
        x_cal = to_tensor(cal_x) if cal_x is not None else None
        nets, history = _fit(
            to_tensor(fit_x),
            torch.from_numpy(fit_y),
            x_cal,
            cal_y,
            hp,
            config,
            "holdout" if cal_x is not None else "full",
            log,
            progress,
        )
        epochs_run = len(history)
        metrics: dict[str, float | int | str | list[dict[str, float]]] = {
            "epochs_run": epochs_run,
            "train_images": len(fit_y),
            "calibration_images": 0 if cal_y is None else len(cal_y),
        }
        temperature = 1.0
        if x_cal is not None and cal_y is not None:
            logits = predict_logits(nets, x_cal, hp.flip_tta)
            temperature = fit_temperature(logits, cal_y)
            metrics.update(_calibration_metrics(logits, cal_y, temperature))
            log(
                f"Calibration: temperature={temperature:.4f} fitted on {len(cal_y)} held-out "
                f"images; ECE {metrics['validation_ece_uncalibrated']:.4f} -> "
                f"{metrics['validation_ece']:.4f}"
            )
        else:
            log("Calibration: no held-out data, temperature=1 (probabilities uncalibrated)")
        if hp.retrain_full and not explicit_val and cal_x is not None:
            log(
                f"Retraining on all {len(labels)} images for {epochs_run} epochs "
                "(temperature kept from the held-out run)"
            )
            full_hp = _replace_epochs(hp, epochs_run)
            nets, more = _fit(
                to_tensor(images),
                torch.from_numpy(labels),
                None,
                None,
                full_hp,
                config,
                "full",
                log,
                progress,
            )
            history += more
            metrics["train_images"] = len(labels)
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    metrics["temperature"] = temperature
    return TrainResult(nets, config, temperature, hp, history, metrics)


def _calibration_metrics(
    logits: np.ndarray, labels: np.ndarray, temperature: float
) -> dict[str, float | int | str | list[dict[str, float]]]:
    """Held-out metrics before and after temperature scaling (threshold rows for the table)."""
    raw, cal = softmax(logits), softmax(logits, temperature)
    return {
        "validation_accuracy": accuracy(logits, labels),
        "validation_nll_uncalibrated": nll(logits, labels),
        "validation_nll": nll(logits, labels, temperature),
        "validation_ece_uncalibrated": expected_calibration_error(raw, labels),
        "validation_ece": expected_calibration_error(cal, labels),
        "validation_thresholds": [
            {
                "threshold": r.threshold,
                "pass_share": r.pass_share,
                "accuracy_on_passed": r.accuracy_on_passed,
            }
            for r in threshold_table(cal, labels)
        ],
    }


def _replace_epochs(hp: Hyperparameters, epochs: int) -> Hyperparameters:
    return replace(hp, epochs=epochs, early_stopping=False)


class _torch_settings:
    """Fix the thread count and turn on deterministic algorithms; restore both afterwards."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self.saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(True)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved[0])
        torch.use_deterministic_algorithms(self.saved[1])
