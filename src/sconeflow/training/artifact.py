"""The model artifact: `model.tar.gz` holding `model.onnx` and `model.json`.

model.onnx
    input  "input"          float32 (batch, 3, H, W), RGB, normalised: (pixel / 255 - mean) / std
    output "probabilities"  float32 (batch, classes), CALIBRATED class probabilities
    Flip test-time augmentation, the ensemble average, the temperature and the softmax are all
    inside the graph, so a server only normalises pixels and runs it (onnxruntime, no torch).
model.json
    class names in label order, image shape, normalisation, temperature, output kind,
    model config (to rebuild the nets), hyperparameters (SageMaker strings), metrics, training
    data checksums (passed through) and the sconeflow version. `FORMAT` names its version.

Reading an artifact back is serving's job (`sconeflow.serving.model.extract_artifact`),
which never trusts its input; there is one reader, and it needs no torch.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import tarfile
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch

from sconeflow import __version__
from sconeflow.errors import ModelError
from sconeflow.training.augment import MEAN, STD
from sconeflow.training.model import count_macs, count_parameters
from sconeflow.training.train import TrainResult

FORMAT = "sconeflow-model/1"
ONNX_NAME, JSON_NAME = "model.onnx", "model.json"
OPSET = 17


def export_onnx(result: TrainResult) -> bytes:
    """The calibrated inference graph as ONNX bytes (opset 17, dynamic batch)."""
    graph = result.inference_graph()
    _, h, w = result.hyperparameters.image_shape
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            graph,
            (torch.zeros(1, 3, h, w),),
            buffer,  # type: ignore[arg-type]  # file objects work; the stub says paths only
            input_names=["input"],
            output_names=["probabilities"],
            dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: offline, a small clean graph
        )
    return buffer.getvalue()


def build_metadata(
    result: TrainResult,
    class_names: list[str],
    data_checksums: Mapping[str, str] | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The model.json document for `result`."""
    hp = result.hyperparameters
    if len(class_names) != hp.num_classes:
        raise ModelError(
            f"expected {hp.num_classes} class names (num_classes), got {len(class_names)}: "
            f"{class_names!r}"
        )
    graph = result.inference_graph()
    net = result.nets[0]
    views = 2 if hp.flip_tta else 1
    macs = count_macs(net, hp.image_shape) * len(result.nets) * views
    return {
        "format": FORMAT,
        "sconeflow_version": __version__,
        "classes": list(class_names),
        "image_shape": list(hp.image_shape),
        "normalization": {
            "layout": "NCHW",
            "channel_order": "RGB",
            "scale": "pixel / 255, then (x - mean) / std",
            "mean": list(MEAN),
            "std": list(STD),
        },
        "input": {"name": "input", "dtype": "float32", "shape": ["batch", *hp.image_shape]},
        "output": "probabilities",  # calibrated; the graph ends in a softmax
        "output_tensor": {
            "name": "probabilities",
            "dtype": "float32",
            "shape": ["batch", hp.num_classes],
        },
        "temperature": result.temperature,
        "calibration": {
            "method": "temperature",
            "flip_tta": hp.flip_tta,
            "ensemble_size": len(result.nets),
        },
        "model_config": asdict(result.model_config),
        "cost": {
            "macs_per_image": macs,
            "flops_per_image": 2 * macs,
            "parameters": count_parameters(graph),
        },
        "onnx_opset": OPSET,
        "hyperparameters": hp.to_strings(),
        "metrics": _json_safe({**result.metrics, **(extra_metrics or {})}),
        "training_data": dict(data_checksums or {}),
    }


def write_artifact(
    result: TrainResult,
    class_names: list[str],
    data_checksums: Mapping[str, str] | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
) -> bytes:
    """model.tar.gz bytes: model.onnx + model.json, byte-identical for identical inputs."""
    meta = build_metadata(result, class_names, data_checksums, extra_metrics)
    return pack_artifact(export_onnx(result), meta)


def pack_artifact(onnx_bytes: bytes, meta: Mapping[str, Any]) -> bytes:
    """Tar and gzip the two files with fixed owners and times (reproducible bytes)."""
    json_bytes = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((ONNX_NAME, onnx_bytes), (JSON_NAME, json_bytes)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _json_safe(value: Any) -> Any:
    """Metrics with NaN/inf turned into None, so model.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
