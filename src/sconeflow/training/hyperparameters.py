"""Hyperparameters of a training job, parsed from SageMaker's string form.

SageMaker's built-in image-classification algorithm receives every hyperparameter as a
string (`{"epochs": "30", "learning_rate": "0.1", ...}`, AWS_FORMATS.md section 2). We
accept the same names and string values, so a job definition moves to AWS unchanged, plus a
few sconeflow extras (`seed`, `validation_fraction`, ...). The DEFAULTS ARE OURS: with no
hyperparameters at all you get the recipe measured in `benchmarks/train_bench.py`, not
SageMaker's ResNet-152 settings. Pass the reference's values to get its behaviour.

Ranges follow the algorithm's documentation (docs.aws.amazon.com/sagemaker/latest/dg/
IC-Hyperparameter.html), e.g. learning_rate in (0, 1], momentum and weight_decay in [0, 1],
top_k above 1; where a documented end point would break the optimiser (beta_1, beta_2 or
gamma of exactly 1 stop Adam's or RMSprop's averages from moving) the message says so.

`max_runtime_in_seconds` is SageMaker's `StoppingCondition.MaxRuntimeInSeconds` carried as
a hyperparameter: the job's time budget (training/budget.py). With `epochs` left out, the
epoch count is planned to fit it; an explicit `epochs` means exactly that many.

`parse_hyperparameters` checks every name and value before anything trains; an unknown name
(with the closest known one suggested) or a bad value raises `HyperparameterError` naming the
key, the value and what is expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from sconeflow.errors import ConfigError

OPTIMIZERS = ("sgd", "nag", "adam", "rmsprop")
# "flip_translate" is ours (mirror + reflect-padded translation); "none" turns augmentation
# off; the three crop* names are SageMaker's.
AUGMENTATIONS = ("flip_translate", "none", "crop", "crop_color", "crop_color_transform")
# SageMaker's accepted depths: ImageNet-style ResNets and CIFAR-style 6n+2 ResNets.
RESNET_DEPTHS = (18, 34, 50, 101, 152, 200, 20, 32, 44, 56, 110)
# The job's default time budget, seconds: the default job ends within it on any 2-core
# machine (fewer epochs on a slower one), and `sconeflow pipeline` fits in 10 minutes.
DEFAULT_MAX_RUNTIME = 360
# SageMaker's limit for StoppingCondition.MaxRuntimeInSeconds: 28 days.
MAX_RUNTIME_LIMIT = 28 * 24 * 3600


class HyperparameterError(ConfigError):
    """A training hyperparameter has an unknown name or a bad value."""


@dataclass(frozen=True)
class Hyperparameters:
    """One training job's settings. Units: epochs are passes over the training part."""

    # --- SageMaker image-classification names (our defaults) ---
    num_classes: int = 2
    num_training_samples: int | None = None  # checked against the data when given
    image_shape: tuple[int, int, int] = (3, 32, 32)  # C,H,W
    epochs: int | None = None  # None = planned to fit max_runtime_in_seconds (at most 200)
    learning_rate: float = 0.05  # peak lr of the warmup+cosine schedule
    mini_batch_size: int = 64
    num_layers: int | None = None  # None = our compact net; a depth = a ResNet
    use_pretrained_model: int = 0
    optimizer: str = "nag"
    momentum: float = 0.9
    weight_decay: float = 5e-4  # on conv/linear weights only, not BatchNorm
    beta_1: float = 0.9
    beta_2: float = 0.999
    eps: float = 1e-8
    gamma: float = 0.9  # rmsprop's decay
    lr_scheduler_factor: float = 0.1
    lr_scheduler_step: tuple[int, ...] = ()  # empty = warmup+cosine; epochs = step decay
    augmentation_type: str = "flip_translate"
    checkpoint_frequency: int | None = None  # accepted for compatibility; no checkpoints
    early_stopping: bool = False
    early_stopping_min_epochs: int = 10
    early_stopping_patience: int = 5
    early_stopping_tolerance: float = 0.0
    precision_dtype: str = "float32"
    multi_label: int = 0
    use_weighted_loss: int = 0
    top_k: int | None = None
    # --- sconeflow extras ---
    seed: int = 0
    validation_fraction: float = 0.15  # held out of the training images for calibration
    label_smoothing: float = 0.0
    warmup_fraction: float = 0.1  # share of steps with a linear lr warmup (cosine schedule)
    translate: int = 4  # pixels of reflect-padded random translation
    cutout: int = 12  # side of a zeroed square, pixels; 0 = off
    ensemble_size: int = 1  # nets trained and averaged in one job
    ema_decay: float = 0.0  # exponential moving average of weights; 0 = off
    flip_tta: bool = True  # average logits of x and its mirror (inside the ONNX graph)
    retrain_full: bool = True  # after calibration, retrain on all images (+1.5 points, 2x time)
    # torch intra-op threads; None: 1 or 2, whichever runs a step faster here (measured;
    # on a busy machine two OpenMP threads wait on each other and can be 10x slower)
    num_threads: int | None = None
    max_runtime_in_seconds: int = DEFAULT_MAX_RUNTIME  # the job's time budget
    # --- documented SageMaker names with nothing to do on one machine at 32x32 ---
    resize: int | None = None  # accepted only as the image side itself (no resizing)
    kv_store: str | None = None  # distributed training's sync mode; one machine ignores it

    def to_strings(self) -> dict[str, str]:
        """The SageMaker string form, round-trippable through `parse_hyperparameters`."""
        out: dict[str, str] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            if isinstance(value, bool):
                out[key] = "true" if value else "false"
            elif isinstance(value, tuple):
                out[key] = ",".join(str(v) for v in value)
            else:
                out[key] = str(value)
        return out


Parser = Callable[[str], Any]


def _int(lo: int, hi: int) -> tuple[Parser, str]:
    def parse(text: str) -> int:
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError
        return value

    return parse, f"an integer from {lo} to {hi}"


def _optional_int(lo: int, hi: int) -> tuple[Parser, str]:
    parse_int, expected = _int(lo, hi)

    def parse(text: str) -> int | None:
        return None if text.strip().lower() in ("", "none") else parse_int(text)

    return parse, f"{expected}, or empty"


def _float(
    lo: float, hi: float, *, open_lo: bool = False, open_hi: str = ""
) -> tuple[Parser, str]:
    """A number in [lo, hi]; `open_lo` excludes lo; `open_hi` (the reason) excludes hi."""

    def parse(text: str) -> float:
        value = float(text)
        if value != value or not (lo < value if open_lo else lo <= value):
            raise ValueError
        if not (value < hi if open_hi else value <= hi):
            raise ValueError
        return value

    left, right = "(" if open_lo else "[", ")" if open_hi else "]"
    return parse, f"a number in {left}{lo:g}, {hi:g}{right}" + (f" ({open_hi})" if open_hi else "")


def _optional_choice(*options: str) -> tuple[Parser, str]:
    parse_choice, expected = _choice(*options)

    def parse(text: str) -> str | None:
        return None if text.strip().lower() in ("", "none") else parse_choice(text)

    return parse, f"{expected}, or empty"


def _choice(*options: str) -> tuple[Parser, str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError
        return value

    return parse, "one of " + ", ".join(options)


def _bool() -> tuple[Parser, str]:
    def parse(text: str) -> bool:
        value = text.strip().lower()
        if value in ("1", "true", "yes"):
            return True
        if value in ("0", "false", "no"):
            return False
        raise ValueError

    return parse, "true/false (or 1/0)"


def _only(value: int, why: str) -> tuple[Parser, str]:
    def parse(text: str) -> int:
        if int(text) != value:
            raise ValueError
        return value

    return parse, f"{value} ({why})"


def _image_shape() -> tuple[Parser, str]:
    def parse(text: str) -> tuple[int, int, int]:
        c, h, w = (int(part) for part in text.split(","))
        if c != 3 or not (8 <= h <= 512 and 8 <= w <= 512):
            raise ValueError
        return (c, h, w)

    return parse, "'3,H,W' with H and W from 8 to 512 (e.g. '3,32,32')"


def _depth() -> tuple[Parser, str]:
    def parse(text: str) -> int | None:
        if text.strip().lower() in ("", "none"):
            return None
        value = int(text)
        if value not in RESNET_DEPTHS:
            raise ValueError
        return value

    return parse, "empty (our compact net) or a ResNet depth: " + ", ".join(
        str(d) for d in RESNET_DEPTHS
    )


def _steps() -> tuple[Parser, str]:
    def parse(text: str) -> tuple[int, ...]:
        if not text.strip():
            return ()
        steps = tuple(int(part) for part in text.split(","))
        if any(s < 1 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError
        return steps

    return parse, "increasing epoch numbers separated by commas (e.g. '10,20'), or empty"


# SageMaker documents [0, 1]; exactly 1 would freeze the moving average, so it is refused.
_STILL = "1 would stop the moving average from moving"

_SPECS: dict[str, tuple[Parser, str]] = {
    "num_classes": _int(2, 1000),
    "num_training_samples": _optional_int(1, 10_000_000),
    "image_shape": _image_shape(),
    "epochs": _optional_int(1, 1000),
    "learning_rate": _float(0.0, 1.0, open_lo=True),
    "mini_batch_size": _int(1, 4096),
    "num_layers": _depth(),
    "use_pretrained_model": _only(0, "no pretrained weights are available offline"),
    "optimizer": _choice(*OPTIMIZERS),
    "momentum": _float(0.0, 1.0),
    "weight_decay": _float(0.0, 1.0),
    "beta_1": _float(0.0, 1.0, open_hi=_STILL),
    "beta_2": _float(0.0, 1.0, open_hi=_STILL),
    "eps": _float(0.0, 1.0, open_lo=True),
    "gamma": _float(0.0, 1.0, open_hi=_STILL),
    "lr_scheduler_factor": _float(0.0, 1.0, open_lo=True),
    "lr_scheduler_step": _steps(),
    "augmentation_type": _choice(*AUGMENTATIONS),
    "checkpoint_frequency": _optional_int(1, 1000),
    "early_stopping": _bool(),
    "early_stopping_min_epochs": _int(1, 1000),
    "early_stopping_patience": _int(1, 1000),
    "early_stopping_tolerance": _float(0.0, 1.0),
    "precision_dtype": _choice("float32"),  # float16 training on CPU is not offered
    "multi_label": _only(0, "multi-label training is not supported"),
    "use_weighted_loss": _int(0, 1),
    "top_k": _optional_int(2, 1000),  # documented: larger than 1 (top-1 is the accuracy)
    "seed": _int(0, 2**31 - 1),
    "validation_fraction": _float(0.0, 0.5),
    "label_smoothing": _float(0.0, 0.5),
    "warmup_fraction": _float(0.0, 0.5),
    "translate": _int(0, 16),
    "cutout": _int(0, 32),
    "ensemble_size": _int(1, 8),
    "ema_decay": _float(0.0, 0.9999),
    "flip_tta": _bool(),
    "retrain_full": _bool(),
    "num_threads": _optional_int(1, 256),
    "max_runtime_in_seconds": _int(1, MAX_RUNTIME_LIMIT),
    "resize": _optional_int(8, 512),
    "kv_store": _optional_choice("dist_sync", "dist_async"),
}
assert set(_SPECS) == {f.name for f in fields(Hyperparameters)}  # table and dataclass agree
NAMES = tuple(sorted(_SPECS))


def parse_hyperparameters(raw: Mapping[str, object] | None = None) -> Hyperparameters:
    """Parse SageMaker-style hyperparameters (string values; numbers and bools also accepted).

    >>> parse_hyperparameters({"epochs": "20", "optimizer": "adam"}).epochs
    20
    """
    values: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key not in _SPECS:
            raise HyperparameterError(_unknown(str(key), value))
        parse, expected = _SPECS[key]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        try:
            values[key] = parse(text)
        except (ValueError, TypeError) as err:
            raise HyperparameterError(
                f"hyperparameter {key!r}: got {value!r}, expected {expected}"
            ) from err
    hp = Hyperparameters(**values)
    _check_together(hp)
    return hp


def _unknown(key: str, value: object) -> str:
    """The message for an unknown name: the closest known name, or where the names are."""
    close = difflib.get_close_matches(key.lower(), _SPECS, n=1, cutoff=0.6)
    if close:
        return f"unknown hyperparameter {key!r} (value {value!r}); did you mean {close[0]!r}?"
    return (
        f"unknown hyperparameter {key!r} (value {value!r}); expected a SageMaker "
        "image-classification name such as epochs, learning_rate or mini_batch_size "
        "(`sconeflow train --help` lists them all)"
    )


def _check_together(hp: Hyperparameters) -> None:
    """Rules that involve two settings."""
    if hp.top_k is not None and hp.top_k > hp.num_classes:
        raise HyperparameterError(
            f"hyperparameter 'top_k': got {hp.top_k}, expected at most num_classes "
            f"({hp.num_classes})"
        )
    steps = ",".join(str(s) for s in hp.lr_scheduler_step)
    if hp.lr_scheduler_step and hp.epochs is None:
        raise HyperparameterError(
            f"hyperparameter 'lr_scheduler_step': got '{steps}' with no epochs, expected "
            "epochs as well (the steps are epoch numbers, and a planned epoch count could "
            f"end before them); add e.g. -p epochs={hp.lr_scheduler_step[-1] + 10}"
        )
    if hp.lr_scheduler_step and hp.epochs is not None and hp.lr_scheduler_step[-1] > hp.epochs:
        raise HyperparameterError(
            f"hyperparameter 'lr_scheduler_step': got '{steps}', expected epochs no later "
            f"than epochs ({hp.epochs})"
        )
    frequency = hp.checkpoint_frequency
    if frequency is not None and hp.epochs is not None and frequency > hp.epochs:
        raise HyperparameterError(
            f"hyperparameter 'checkpoint_frequency': got {frequency}, expected at most "
            f"epochs ({hp.epochs})"
        )
    if hp.resize is not None and hp.resize != min(hp.image_shape[1:]):
        raise HyperparameterError(
            f"hyperparameter 'resize': got {hp.resize}, expected the images' own shorter "
            f"side ({min(hp.image_shape[1:])}, from image_shape) or nothing: sconeflow "
            "trains on images as staged and never resizes them"
        )
    if hp.early_stopping and hp.validation_fraction == 0.0:
        raise HyperparameterError(
            "hyperparameter 'early_stopping': got true with validation_fraction 0, expected "
            "a validation_fraction above 0 (or validation data passed to train)"
        )
