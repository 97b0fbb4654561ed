"""Fitting a training job into its time budget, as SageMaker's StoppingCondition does.

The budget is the hyperparameter `max_runtime_in_seconds` (SageMaker's
`StoppingCondition.MaxRuntimeInSeconds`), counted from the job's start: reading the data,
both fits, calibration and export. Compute per job is the same everywhere, but machines are
not (an AVX2-only 2-core machine runs this net's epochs about 4x slower than an AVX-512 one),
so the epoch count is planned on the machine that trains:

1. Measure: a few optimizer steps of a scratch net on the real batches (and one validation
   pass) give the seconds of one step here, now (`Costs`).
2. Plan: with `epochs` left out, the largest epoch count up to the recipe's 200 whose
   estimate fits in `PLAN_SHARE` of the time left (`plan_epochs`); the learning-rate schedule
   is then fixed for that count, so no schedule is ever cut off midway. When even
   `MIN_RETRAIN_EPOCHS` of both fits (held-out, then all images) would not fit, the job trains
   only the held-out fit, with the epochs that fit. An explicit `epochs` means exactly that
   many; a job whose estimate is over the budget is refused before it trains.
3. Keep to it: before the retrain on all images the plan is checked against the time the
   held-out fit really took, and the retrain is skipped (keeping the held-out model) when it
   would not fit. A fit that runs past the budget anyway (a machine that slowed down) is
   given up at the deadline: a retrain falls back to the held-out model, complete and
   calibrated; a held-out fit ends the job as Stopped / MaxRuntimeExceeded.

FLOPs are counted from the net's multiply-accumulates (conv and linear layers, `count_macs`):
a training step costs 3x a forward pass (forward, then backward for inputs and weights),
2 FLOPs per MAC. BatchNorm, activations and the optimiser are left out (a few percent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sconeflow.errors import SconeflowError
from sconeflow.training.hyperparameters import HyperparameterError

MAX_PLANNED_EPOCHS = 200  # the recipe's epoch count; a faster machine does not train longer
# Below this many epochs per fit, one fit with about twice the epochs is planned instead of
# two short ones (a judgement, not a measurement: too few epochs leave the net far from
# converged, and the retrain's extra 15% of images cannot make that up).
MIN_RETRAIN_EPOCHS = 20
PLAN_SHARE = 0.85  # of the time left, planned for the fits; the rest absorbs noise and export
RESERVE_SECONDS = 3.0  # kept back at the end for calibration, ONNX export and the upload ...
RESERVE_SHARE = 0.05  # ... or 5% of a budget under a minute
VALIDATE_EVERY = 10  # held-out accuracy every 10th epoch (and the first and last) ...
# ... or every epoch when early stopping needs it: the pass is 15% of a held-out epoch.


class TrainingStopped(SconeflowError):
    """A training job was stopped before it finished: asked to, or out of time."""

    def __init__(self, message: str, secondary_status: str = "Stopped") -> None:
        super().__init__(message)
        self.secondary_status = secondary_status  # "Stopped" | "MaxRuntimeExceeded"


@dataclass(frozen=True)
class Costs:
    """Seconds measured on this machine, now, for one net."""

    step_seconds: float  # one optimizer step at mini_batch_size (augmentation included)
    validation_seconds: float  # one validation pass over the held-out images (0: none)


@dataclass(frozen=True)
class Phases:
    """The shape of the work: optimizer steps per epoch of each fit, and what else runs."""

    holdout_steps: int  # steps per epoch of the first fit (0 when there is none)
    full_steps: int  # steps per epoch of the retrain on all images (0: no retrain)
    members: int  # nets trained in lockstep (ensemble_size)
    validate_every_epoch: bool  # early stopping reads the held-out accuracy each epoch


@dataclass(frozen=True)
class Plan:
    epochs: int  # of each fit
    retrain_full: bool  # whether the retrain on all images is planned
    planned: bool  # True: epochs chosen to fit the budget; False: given explicitly
    budget_seconds: float  # max_runtime_in_seconds
    time_left: float  # seconds of the budget left when the plan was made
    estimated_seconds: float  # of the planned fits, from the measured costs
    costs: Costs


def validation_epochs(epochs: int, every_epoch: bool) -> list[int]:
    """The epochs (from 0) after which held-out accuracy is measured and logged."""
    if every_epoch:
        return list(range(epochs))
    return sorted({0, epochs - 1, *range(VALIDATE_EVERY - 1, epochs, VALIDATE_EVERY)})


def estimate_seconds(epochs: int, retrain: bool, phases: Phases, costs: Costs) -> float:
    """Seconds of the fits for `epochs` each, at the measured costs."""
    step = costs.step_seconds * phases.members
    seconds = epochs * phases.holdout_steps * step
    if phases.holdout_steps:
        passes = len(validation_epochs(epochs, phases.validate_every_epoch))
        seconds += passes * costs.validation_seconds * phases.members
    if retrain:
        seconds += epochs * phases.full_steps * step
    return seconds


def plan_epochs(
    costs: Costs,
    phases: Phases,
    *,
    budget: float,
    time_left: float,
    epochs: int | None,
    retrain_full: bool,
    max_epochs: int = MAX_PLANNED_EPOCHS,
) -> Plan:
    """The epoch count and fits for the time left; see the module doc.

    >>> c, p = Costs(0.1, 0.0), Phases(10, 12, 1, False)  # 1 s + 1.2 s per epoch pair
    >>> plan_epochs(c, p, budget=300, time_left=300, epochs=None, retrain_full=True).epochs
    114
    """
    reserve = reserve_seconds(budget)
    usable = PLAN_SHARE * max(0.0, time_left - reserve)
    retrain = retrain_full and phases.full_steps > 0

    spent = budget - time_left

    def plan(n: int, again: bool, planned: bool) -> Plan:
        seconds = estimate_seconds(n, again, phases, costs)
        return Plan(n, again, planned, budget, time_left, seconds, costs)

    if epochs is not None:
        chosen = plan(epochs, retrain, False)
        if chosen.estimated_seconds > time_left - reserve:
            need = math.ceil(spent + reserve + chosen.estimated_seconds / PLAN_SHARE)
            raise HyperparameterError(
                f"hyperparameter 'epochs': {epochs} epochs need about "
                f"{chosen.estimated_seconds:.0f} s on this machine ({_per_epoch(costs, phases)}"
                f"), more than the {time_left:.0f} s left of max_runtime_in_seconds="
                f"{budget:.0f}; raise max_runtime_in_seconds to about {need}, or leave epochs "
                "out to plan the epochs to the budget"
            )
        return chosen
    if retrain:
        n = _most_epochs(usable, True, phases, costs, max_epochs)
        if n >= min(MIN_RETRAIN_EPOCHS, max_epochs):
            return plan(n, True, True)
    n = _most_epochs(usable, False, phases, costs, max_epochs)
    if n < 1:
        one = estimate_seconds(1, False, phases, costs)
        need = math.ceil(spent + reserve + MIN_RETRAIN_EPOCHS * one / PLAN_SHARE)
        raise HyperparameterError(
            f"hyperparameter 'max_runtime_in_seconds': got {budget:.0f}, which leaves "
            f"{time_left:.0f} s for training, and one epoch takes about {one:.1f} s on this "
            f"machine; expected room for some epochs: raise it to about {need}"
        )
    return plan(n, False, True)


def reserve_seconds(budget: float) -> float:
    """Seconds kept back from the fits for calibration, export and upload."""
    return min(RESERVE_SECONDS, RESERVE_SHARE * budget)


def _most_epochs(usable: float, retrain: bool, phases: Phases, costs: Costs, cap: int) -> int:
    """The largest epoch count from 0 to `cap` whose estimate fits in `usable` seconds."""
    best = 0
    for n in range(1, cap + 1):  # the estimate grows with n; at most 200 tries
        if estimate_seconds(n, retrain, phases, costs) > usable:
            break
        best = n
    return best


def _per_epoch(costs: Costs, phases: Phases) -> str:
    steps = max(phases.holdout_steps, phases.full_steps)
    return f"{costs.step_seconds * steps * phases.members:.2f} s per epoch measured"


def train_flops(macs: int, images: int, members: int) -> int:
    """FLOPs of one epoch over `images`: forward + backward = 3 forward passes, 2 per MAC."""
    return 6 * macs * images * members


def inference_flops(macs: int, images: int, members: int, views: int) -> int:
    """FLOPs of predicting `images` with every member and `views` (2 with flip-TTA)."""
    return 2 * macs * images * members * views
