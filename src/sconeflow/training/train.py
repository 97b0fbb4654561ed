"""Training loop: images in, trained nets + calibration temperature out.

Default recipe (the defaults of `Hyperparameters`): the compact net of model.py (24.3 M MACs,
294k parameters), up to 200 epochs (as many as fit the job's time budget,
`max_runtime_in_seconds`, 360 s by default; see budget.py), batch 64, SGD-Nesterov momentum
0.9, peak lr 0.05 with 10% linear warmup then cosine to 0 over the planned epochs, weight
decay 5e-4 on conv/linear weights, no label smoothing; augmentation = random mirror +
reflect-padded translation by up to 4 px + a 12x12 cutout, all as batch tensor ops;
flip-TTA inside the exported graph. The temperature is fitted on a stratified, seeded 15%
held out of the training images; then the net is retrained on all of them for the same
epochs with that temperature (`retrain_full`), when that fits the budget.
Measured with 200 + 200 epochs (benchmarks/train_bench.py, 2-core AMD EPYC VM, seeds 0-2,
dev tarball: 800 train, 200 test): test accuracy 0.940 / 0.930 / 0.920 (mean 0.930), ECE
0.038 / 0.042 / 0.031, at threshold 0.93 pass share 0.830 / 0.795 / 0.620 with accuracy
0.970 / 0.981 / 0.976 on those passed, about 200 s per job (without retraining: 0.915 mean
accuracy in 95 s). The reference's settings on ResNet-20 reach 0.790 (ECE 0.161).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from sconeflow.errors import DataError
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.training.augment import augment, to_tensor
from sconeflow.training.budget import (
    MAX_PLANNED_EPOCHS,
    Costs,
    Phases,
    Plan,
    TrainingStopped,
    inference_flops,
    plan_epochs,
    reserve_seconds,
    train_flops,
    validation_epochs,
)
from sconeflow.training.calibration import (
    accuracy,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
    threshold_table,
)
from sconeflow.training.hyperparameters import HyperparameterError, Hyperparameters
from sconeflow.training.model import InferenceGraph, ModelConfig, build_model, count_macs

LogFn = Callable[[str], None]
StopFn = Callable[[], "str | None"]  # a reason to stop now, or None
REPLAN_AFTER_EPOCHS = 3  # a planned first fit is planned again from its epochs 2 and 3
PROBE_STEPS = 4  # timed optimizer steps (after one warm-up) that the plan is made from


def _no_log(line: str) -> None:
    """The default: log nothing."""


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # from 0, as in the built-in algorithm's log
    phase: str  # "holdout" (validation part held out) or "full" (retrain on everything)
    train_accuracy: float  # on augmented batches, as the built-in algorithm reports it
    train_loss: float
    seconds: float  # of the training steps (the validation pass is not included)
    validation_accuracy: float | None  # None when not measured after this epoch


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


def _lr_factor(hp: Hyperparameters, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based) of `epochs` epochs."""
    if hp.lr_scheduler_step:  # SageMaker's step decay, at epoch boundaries
        epoch = step // steps_per_epoch
        return hp.lr_scheduler_factor ** sum(epoch >= s for s in hp.lr_scheduler_step)
    total = epochs * steps_per_epoch
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
        if hp.epochs is None:
            raise ValueError("the epoch count is planned before a schedule is built")
        self.epochs = hp.epochs  # the schedule's length; a shortened plan lowers it
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: _lr_factor(hp, step, steps, self.epochs)
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


class _OutOfTime(Exception):
    """The fit reached the job's deadline (internal: train() decides what it means)."""


@dataclass
class _Watch:
    """What the loop consults between optimizer steps, and whom it tells about epochs."""

    clock: Callable[[], float]
    deadline: float  # clock value by which the fits must end
    should_stop: StopFn
    progress: ProgressFn
    log: LogFn
    total_epochs: int = 0  # over both fits, for the one progress bar
    done_epochs: int = 0
    elastic: bool = False  # the epoch count was planned: shorten it rather than overrun
    # With a planned count, the first fit's epoch count made again from its own measured
    # epochs (seconds of one optimizer step -> epochs): the probe's few steps can be off.
    replan: Callable[[float], int] | None = None
    follow_up: bool = False  # a retrain of as many epochs follows this fit (progress bar)

    def check(self) -> None:
        if self.clock() > self.deadline:
            raise _OutOfTime
        reason = self.should_stop()
        if reason:
            raise TrainingStopped(reason)


def _step(
    member: _Member, xb: torch.Tensor, yb: torch.Tensor, hp: Hyperparameters, loss_fn: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on an augmented batch; returns (logits, loss)."""
    out = member.net(xb)  # (B, classes)
    loss = loss_fn(out, yb)
    member.opt.zero_grad(set_to_none=True)
    loss.backward()
    member.opt.step()
    member.sched.step()
    member.step += 1
    if hp.ema_decay > 0:
        member.update_ema(hp.ema_decay)
    return out, loss


def _train_epoch(
    member: _Member,
    x: torch.Tensor,
    y: torch.Tensor,
    hp: Hyperparameters,
    loss_fn: nn.Module,
    watch: _Watch,
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
        watch.check()
        out, loss = _step(member, augment(x[idx], member.gen, hp), y[idx], hp, loss_fn)
        correct += int((out.argmax(1) == y[idx]).sum())
        loss_sum += float(loss.detach()) * len(idx)
    return correct, loss_sum


def steps_per_epoch(images: int, batch: int) -> int:
    """Optimizer steps in one epoch (a last batch of one image is dropped)."""
    return sum(1 for s in range(0, images, batch) if images - s >= 2)


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


def _loss_fn(y: torch.Tensor, hp: Hyperparameters) -> nn.Module:
    weight = None
    if hp.use_weighted_loss:
        counts = torch.bincount(y, minlength=hp.num_classes).clamp(min=1).float()
        weight = counts.sum() / (hp.num_classes * counts)  # inverse class frequency
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing)


def _measure(
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor | None,
    hp: Hyperparameters,
    config: ModelConfig,
    clock: Callable[[], float],
) -> Costs:
    """Seconds of one optimizer step and one validation pass, from a scratch net's steps on
    the real batches. Runs under forked random state, so the job's own nets and streams are
    exactly as without it."""
    with torch.random.fork_rng(devices=[]):
        probe = _Member(replace(hp, epochs=1), config, index=999, steps=1)
        loss_fn = _loss_fn(y, hp)
        batch = min(hp.mini_batch_size, len(y))

        def one_step() -> None:
            idx = torch.randint(0, len(y), (batch,), generator=probe.gen)
            _step(probe, augment(x[idx], probe.gen, hp), y[idx], hp, loss_fn)

        one_step()  # warm-up: oneDNN builds its kernels for these shapes on the first call
        times = [clock()]
        for _ in range(PROBE_STEPS):
            one_step()
            times.append(clock())
        # the median step: one step slowed by a neighbour's burst does not move the plan
        step_seconds = float(np.median(np.diff(times)))
        validation_seconds = 0.0
        if x_val is not None:
            start = clock()
            predict_logits([probe.final(hp)], x_val, hp.flip_tta)
            validation_seconds = clock() - start
    return Costs(step_seconds, validation_seconds)


def _fit(
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor | None,
    y_val: np.ndarray | None,
    hp: Hyperparameters,
    config: ModelConfig,
    phase: str,
    watch: _Watch,
) -> tuple[list[nn.Module], list[EpochMetrics]]:
    """Train `hp.ensemble_size` nets in lockstep for `hp.epochs`, one epoch each per round;
    log each epoch as the built-in algorithm does. Raises _OutOfTime at the deadline."""
    assert hp.epochs is not None  # planned by train()
    steps = steps_per_epoch(len(y), hp.mini_batch_size)
    members = [_Member(hp, config, i, steps) for i in range(hp.ensemble_size)]
    loss_fn = _loss_fn(y, hp)
    validate_at = set(validation_epochs(hp.epochs, hp.early_stopping))
    history: list[EpochMetrics] = []
    best, best_epoch, val_acc = -1.0, 0, None
    planned = hp.epochs
    epoch = 0
    while epoch < planned:
        start = watch.clock()
        correct, loss_sum = 0, 0.0
        for member in members:
            c, s = _train_epoch(member, x, y, hp, loss_fn, watch)
            correct, loss_sum = correct + c, loss_sum + s
        seen = len(members) * len(y)
        seconds = watch.clock() - start
        measured = None
        if x_val is not None and y_val is not None and epoch in validate_at:
            nets = [m.final(hp) for m in members]
            val_acc = measured = accuracy(predict_logits(nets, x_val, hp.flip_tta), y_val)
        history.append(
            EpochMetrics(epoch, phase, correct / seen, loss_sum / seen, seconds, measured)
        )
        # The built-in algorithm's exact log lines (tools parse them with regexes).
        watch.log(f"Epoch[{epoch}] Train-accuracy={correct / seen:.6f}")
        watch.log(f"Epoch[{epoch}] Time cost={seconds:.3f}")
        if measured is not None:
            watch.log(f"Epoch[{epoch}] Validation-accuracy={measured:.6f}")
        watch.done_epochs += 1
        if watch.replan is not None and epoch + 1 == REPLAN_AFTER_EPOCHS < planned:
            # epoch 0 is left out: it still pays for warm-up (allocator, kernel caches)
            pace = float(np.median([m.seconds for m in history[1:]]))
            again = watch.replan(pace / (steps * len(members)))
            if again > planned:
                watch.log(
                    f"Plan revised from {planned} to {again} epochs {_PHASE_NAMES[phase]}: "
                    f"its epochs take {pace:.2f} s, less than the first steps measured"
                )
                watch.total_epochs += (again - planned) * (2 if watch.follow_up else 1)
                planned = again
                for member in members:
                    member.epochs = planned
                validate_at = set(validation_epochs(planned, hp.early_stopping))
        if watch.elastic and epoch + 1 < planned:
            shorter = _shortened(planned, history, watch)
            if shorter < planned:
                watch.log(
                    f"Schedule shortened from {planned} to {shorter} epochs {_PHASE_NAMES[phase]}"
                    f": epochs take {seconds:.2f} s now, longer than planned, and the job must "
                    "end within max_runtime_in_seconds (the learning rate still anneals to 0)"
                )
                watch.total_epochs -= (planned - shorter) * (2 if watch.follow_up else 1)
                planned = shorter
                for member in members:
                    member.epochs = planned
                validate_at = set(validation_epochs(planned, hp.early_stopping))
        detail = f"epoch {epoch + 1}/{planned} {_PHASE_NAMES[phase]}"
        detail += f", train acc {correct / seen:.3f}"
        if val_acc is not None:
            detail += f", held-out acc {val_acc:.3f}"
        watch.progress("train", watch.done_epochs, watch.total_epochs, detail=detail)
        if hp.early_stopping and measured is not None:
            # SageMaker's rule: an improvement smaller than `tolerance` times the best so far
            # does not count.
            if best < 0 or measured - best > hp.early_stopping_tolerance * best:
                best, best_epoch = measured, epoch
            elif (
                epoch + 1 >= hp.early_stopping_min_epochs
                and epoch - best_epoch >= hp.early_stopping_patience
            ):
                watch.log(
                    f"Early stopping at epoch {epoch}: best Validation-accuracy={best:.6f} "
                    f"at epoch {best_epoch}"
                )
                break
        epoch += 1
    return [m.final(hp) for m in members], history


def _shortened(planned: int, history: list[EpochMetrics], watch: _Watch) -> int:
    """The epoch count that still ends by the deadline at the pace of the recent epochs
    (`planned` when it does). The machine slowed down after the plan was made (another
    process took a core, thermal limits): finishing a compressed cosine schedule keeps a
    complete, annealed model, where running into the deadline would leave none."""
    done = len(history)
    recent = history[-3:]
    pace = max(sum(m.seconds for m in recent) / len(recent), recent[-1].seconds)
    fits = int(0.95 * (watch.deadline - watch.clock()) / pace) if pace > 0 else planned
    return max(done + 1, min(planned, done + fits))


_PHASE_NAMES = {"holdout": "(held-out fit)", "full": "(all images)"}


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


def _never() -> str | None:
    """The default stop check: nobody asks to stop."""
    return None


def train(
    images: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters | None = None,
    *,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    log: LogFn = _no_log,
    notice: LogFn = _no_log,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = _never,
    started: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    max_epochs: int = MAX_PLANNED_EPOCHS,
) -> TrainResult:
    """Train on uint8 images (N, H, W, 3) with integer labels (N,); calibrate; return nets.

    Calibration data: `val_images`/`val_labels` when given, otherwise a stratified
    `hp.validation_fraction` of the training images held out (seeded by `hp.seed`). The
    temperature is fitted on held-out predictions only; with `hp.retrain_full` (and no
    explicit validation data) the nets are then retrained on all images for the same number
    of epochs and keep that temperature. The epochs are planned to `hp.max_runtime_in_seconds`
    counted from `started` (a `clock` value; default: now) unless `hp.epochs` is given; see
    budget.py (at most `max_epochs`, the recipe's 200). Same seed, data, epochs and thread
    count -> same result.

    `log` gets every line of the job's log; `notice` the few a watching user should see (the
    plan, a skipped retrain), which go to `log` as well. `should_stop` is asked between
    optimizer steps and returns a reason to stop (-> TrainingStopped) or None.
    """
    hp = hp or Hyperparameters()
    started = clock() if started is None else started
    deadline = started + hp.max_runtime_in_seconds

    def tell(line: str) -> None:
        log(line)
        notice(line)

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
    retrain = hp.retrain_full and not explicit_val and cal_x is not None
    phase = "holdout" if cal_x is not None else "full"
    with _torch_settings(hp.num_threads or 2):
        x_fit, y_fit = to_tensor(fit_x), torch.from_numpy(fit_y)
        x_cal = to_tensor(cal_x) if cal_x is not None else None
        by_threads = {}
        for threads in [hp.num_threads] if hp.num_threads else _thread_choices():
            torch.set_num_threads(threads)
            by_threads[threads] = _measure(x_fit, y_fit, x_cal, hp, config, clock)
        threads = min(by_threads, key=lambda t: by_threads[t].step_seconds)
        torch.set_num_threads(threads)
        costs = by_threads[threads]
        shape = Phases(
            holdout_steps=steps_per_epoch(len(fit_y), hp.mini_batch_size),
            full_steps=steps_per_epoch(len(labels), hp.mini_batch_size) if retrain else 0,
            members=hp.ensemble_size,
            validate_every_epoch=hp.early_stopping,
        )
        plan = plan_epochs(
            costs,
            shape,
            budget=hp.max_runtime_in_seconds,
            time_left=deadline - clock(),
            epochs=hp.epochs,
            retrain_full=retrain,
            max_epochs=max_epochs,
        )
        tell(_describe_plan(plan, shape, hp, threads, by_threads))
        run_hp = replace(hp, epochs=plan.epochs, num_threads=threads)
        watch = _Watch(clock, deadline - reserve_seconds(hp.max_runtime_in_seconds), should_stop,
                       progress, log)  # fmt: skip
        watch.total_epochs = plan.epochs * (2 if plan.retrain_full else 1)
        watch.elastic = hp.epochs is None  # an explicit count means exactly that many
        fit_started = clock()

        def replan(step_seconds: float) -> int:
            """The planned count again, at the pace the fit really runs (only ever more:
            a slower pace is the shortening's business)."""
            again = plan_epochs(replace(costs, step_seconds=step_seconds), shape,
                                budget=hp.max_runtime_in_seconds,
                                time_left=deadline - fit_started, epochs=None,
                                retrain_full=plan.retrain_full,
                                max_epochs=max_epochs)  # fmt: skip
            return again.epochs if again.retrain_full == plan.retrain_full else plan.epochs

        watch.replan = replan if watch.elastic else None
        watch.follow_up = plan.retrain_full
        try:
            nets, history = _fit(x_fit, y_fit, x_cal, cal_y, run_hp, config, phase, watch)
        except _OutOfTime as err:
            raise TrainingStopped(
                f"the {phase} fit ran past max_runtime_in_seconds={hp.max_runtime_in_seconds} "
                f"after {watch.done_epochs} of {plan.epochs} epochs (planned for "
                f"{plan.estimated_seconds:.0f} s; the machine slowed down?); raise "
                "max_runtime_in_seconds or leave epochs out",
                "MaxRuntimeExceeded",
            ) from err
        epochs_run = len(history)  # fewer than planned after an early stop
        watch.total_epochs = epochs_run * (2 if plan.retrain_full else 1)
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
        final_phase = phase
        if plan.retrain_full:
            more = _retrain(images, labels, hp, config, history, shape, watch, tell)
            if more is not None:
                nets, extra = more
                history += extra
                final_phase = "full"
                metrics["train_images"] = len(labels)
            else:
                watch.total_epochs = watch.done_epochs
    metrics.update(
        _cost_metrics(nets[0], run_hp, plan, history, final_phase, len(fit_y), len(labels), cal_y)
    )
    for t, c in by_threads.items():
        metrics[f"probe_step_seconds_{t}_thread{'s' if t > 1 else ''}"] = round(c.step_seconds, 5)
    metrics["train_seconds"] = round(clock() - started, 3)
    metrics["temperature"] = temperature
    return TrainResult(nets, config, temperature, run_hp, history, metrics)


def _retrain(
    images: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters,
    config: ModelConfig,
    history: list[EpochMetrics],
    shape: Phases,
    watch: _Watch,
    tell: LogFn,
) -> tuple[list[nn.Module], list[EpochMetrics]] | None:
    """The retrain on all images for as many epochs as the held-out fit ran, if it fits in
    the time left, judged by what the held-out fit really took per step; None (keep the
    held-out model) when it does not fit, or runs out of time anyway."""
    epochs = len(history)
    per_step = sum(m.seconds for m in history) / (epochs * shape.holdout_steps * shape.members)
    need = epochs * shape.full_steps * shape.members * per_step
    left = watch.deadline - watch.clock()
    if need > left:
        tell(
            f"Retraining on all {len(labels)} images skipped: it needs about {need:.0f} s at "
            f"this machine's pace so far, and {max(0.0, left):.0f} s are left of "
            f"max_runtime_in_seconds={hp.max_runtime_in_seconds}; keeping the held-out model"
        )
        return None
    watch.log(
        f"Retraining on all {len(labels)} images for {epochs} epochs "
        "(temperature kept from the held-out run)"
    )
    watch.replan = None  # as many epochs as the held-out fit ran, or fewer if time runs out
    watch.follow_up = False
    try:
        return _fit(
            to_tensor(images),
            torch.from_numpy(labels),
            None,
            None,
            replace(hp, epochs=epochs, early_stopping=False),
            config,
            "full",
            watch,
        )
    except _OutOfTime:
        tell(
            f"Retraining on all images ran out of max_runtime_in_seconds="
            f"{hp.max_runtime_in_seconds}; keeping the held-out model (complete and calibrated)"
        )
        return None


def _thread_choices() -> list[int]:
    """Thread counts to measure when num_threads is left out: 2 (the most this net's small
    batches use well) and 1, on a machine that lets this process use two cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [2, 1] if (cores or 1) >= 2 else [1]


def _describe_plan(
    plan: Plan, shape: Phases, hp: Hyperparameters, threads: int, by_threads: dict[int, Costs]
) -> str:
    fits = f"{plan.epochs} + {plan.epochs} epochs (held-out fit, then all images)"
    if not plan.retrain_full:
        fits = f"{plan.epochs} epochs" + (" (held-out fit only)" if shape.full_steps else "")
    how = "planned to fit" if plan.planned else "as asked, within"
    others = ", ".join(
        f"{t} {'thread' if t == 1 else 'threads'}: {c.step_seconds:.3f} s"
        for t, c in by_threads.items()
        if t != threads
    )
    return (
        f"Plan: {fits}, {how} max_runtime_in_seconds={hp.max_runtime_in_seconds}: one step "
        f"takes {plan.costs.step_seconds:.3f} s here with {threads} "
        f"{'thread' if threads == 1 else 'threads'}{f' ({others})' if others else ''}, so "
        f"about {plan.estimated_seconds:.0f} s of training"
    )


def _cost_metrics(
    net: nn.Module,
    hp: Hyperparameters,
    plan: Plan,
    history: list[EpochMetrics],
    final_phase: str,
    fit_images: int,
    all_images: int,
    cal_y: np.ndarray | None,
) -> dict[str, float | int | str | list[dict[str, float]]]:
    """The budget, the plan, measured seconds per epoch and FLOPs (see budget.py)."""
    macs = count_macs(net, hp.image_shape)
    members, views = hp.ensemble_size, 2 if hp.flip_tta else 1
    n_cal = 0 if cal_y is None else len(cal_y)
    flops = 0
    out: dict[str, float | int | str | list[dict[str, float]]] = {
        "max_runtime_in_seconds": hp.max_runtime_in_seconds,
        "epochs_planned": plan.epochs,
        "epochs_planned_by": "budget" if plan.planned else "hyperparameter",
        "estimated_train_seconds": round(plan.estimated_seconds, 3),
        "probe_step_seconds": round(plan.costs.step_seconds, 5),
        "num_threads": hp.num_threads or 0,
        "final_fit": final_phase,
    }
    for phase, images in (("holdout", fit_images), ("full", all_images)):
        epochs = [m for m in history if m.phase == phase]
        if not epochs:
            continue
        per_epoch = train_flops(macs, images, members)
        validations = sum(m.validation_accuracy is not None for m in epochs)
        flops += per_epoch * len(epochs)
        flops += validations * inference_flops(macs, n_cal, members, views)
        out[f"seconds_per_epoch_{phase}"] = round(sum(m.seconds for m in epochs) / len(epochs), 4)
        out[f"flops_per_epoch_{phase}"] = per_epoch
    flops += inference_flops(macs, n_cal, members, views)  # the calibration predictions
    flops += (1 + PROBE_STEPS) * train_flops(macs, min(hp.mini_batch_size, fit_images), 1)
    out["seconds_per_epoch"] = out.get(f"seconds_per_epoch_{final_phase}", 0.0)
    out["flops_per_epoch"] = out.get(f"flops_per_epoch_{final_phase}", 0)
    out["train_flops"] = flops
    return out


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


class _torch_settings:
    """Fix the thread count and turn on deterministic algorithms; restore both afterwards.

    Deterministic mode also fills every new tensor with NaN by default, to catch reads of
    uninitialised memory; that cost 8% of each training step here (230 fills per step) and
    changes no result, so it is turned off while training.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self.saved = (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.utils.deterministic.fill_uninitialized_memory,  # type: ignore[attr-defined]
        )
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved[0])
        torch.use_deterministic_algorithms(self.saved[1])
        torch.utils.deterministic.fill_uninitialized_memory = self.saved[2]  # type: ignore[attr-defined]
