"""Hyperparameters of a training job, parsed from SageMaker's string form.

SageMaker's built-in image-classification algorithm receives every hyperparameter as a
string (`{"epochs": "30", "learning_rate": "0.1", ...}`, AWS_FORMATS.md section 2). We
accept the same names and string values, so a job definition moves to AWS unchanged, plus a
few sconeflow extras (`seed`, `validation_fraction`, ...). The DEFAULTS ARE OURS: with no
hyperparameters at all you get the recipe measured in `benchmarks/train_bench.py`, not
SageMaker's ResNet-152 settings. Pass the reference's values to get its behaviour.

`parse_hyperparameters` checks every name and value before anything trains; an unknown name
or a bad value raises `HyperparameterError` naming the key, the value and what is expected.
"""

from __future__ import annotations

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


class HyperparameterError(ConfigError):
    """A training hyperparameter has an unknown name or a bad value."""


@dataclass(frozen=True)
class Hyperparameters:
    """One training job's settings. Units: epochs are passes over the training part."""

    # --- SageMaker image-classification names (our defaults) ---
    num_classes: int = 2
    num_training_samples: int | None = None  # checked against the data when given
    image_shape: tuple[int, int, int] = (3, 32, 32)  # C,H,W
    epochs: int = 200
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
    num_threads: int = 2  # torch intra-op threads (fixed for determinism)

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


def _float(lo: float, hi: float, *, open_lo: bool = False) -> tuple[Parser, str]:
    def parse(text: str) -> float:
        value = float(text)
        if value != value or not (lo < value if open_lo else lo <= value) or value > hi:
            raise ValueError
        return value

    bracket = "(" if open_lo else "["
    return parse, f"a number in {bracket}{lo}, {hi}]"


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


_SPECS: dict[str, tuple[Parser, str]] = {
    "num_classes": _int(2, 1000),
    "num_training_samples": _optional_int(1, 10_000_000),
    "image_shape": _image_shape(),
    "epochs": _int(1, 1000),
    "learning_rate": _float(0.0, 10.0, open_lo=True),
    "mini_batch_size": _int(1, 4096),
    "num_layers": _depth(),
    "use_pretrained_model": _only(0, "no pretrained weights are available offline"),
    "optimizer": _choice(*OPTIMIZERS),
    "momentum": _float(0.0, 0.999),
    "weight_decay": _float(0.0, 1.0),
    "beta_1": _float(0.0, 0.9999),
    "beta_2": _float(0.0, 0.99999),
    "eps": _float(0.0, 1.0, open_lo=True),
    "gamma": _float(0.0, 0.9999),
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
    "top_k": _optional_int(1, 1000),
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
    "num_threads": _int(1, 256),
}
assert set(_SPECS) == {f.name for f in fields(Hyperparameters)}  # table and dataclass agree


def parse_hyperparameters(raw: Mapping[str, object] | None = None) -> Hyperparameters:
    """Parse SageMaker-style hyperparameters (string values; numbers and bools also accepted).

    >>> parse_hyperparameters({"epochs": "20", "optimizer": "adam"}).epochs
    20
    """
    values: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key not in _SPECS:
            close = [name for name in _SPECS if name.split("_")[0] == str(key).split("_")[0]]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise HyperparameterError(
                f"unknown hyperparameter {key!r} (value {value!r}){hint} "
                f"Known names: {', '.join(sorted(_SPECS))}."
            )
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


def _check_together(hp: Hyperparameters) -> None:
    """Rules that involve two settings."""
    if hp.top_k is not None and hp.top_k > hp.num_classes:
        raise HyperparameterError(
            f"hyperparameter 'top_k': got {hp.top_k}, expected at most num_classes "
            f"({hp.num_classes})"
        )
    if hp.lr_scheduler_step and hp.lr_scheduler_step[-1] > hp.epochs:
        raise HyperparameterError(
            f"hyperparameter 'lr_scheduler_step': got {hp.lr_scheduler_step}, expected "
            f"epochs no later than epochs ({hp.epochs})"
        )
    if hp.early_stopping and hp.validation_fraction == 0.0:
        raise HyperparameterError(
            "hyperparameter 'early_stopping': got true with validation_fraction 0, expected "
            "a validation_fraction above 0 (or validation data passed to train)"
        )
