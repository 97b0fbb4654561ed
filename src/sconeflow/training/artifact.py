"""The model artifact: `model.tar.gz` holding `model.onnx` and `model.json`.

model.onnx
    input  "input"          float32 (batch, 3, H, W), RGB, normalised: (pixel / 255 - mean) / std
    output "probabilities"  float32 (batch, classes), CALIBRATED class probabilities
    output "embedding"      float32 (batch, features): the input of each net's classifier head
                            (pooled features), flip-averaged, nets concatenated. For
                            monitoring only (image-aware drift); serving asks for
                            "probabilities" alone, so its answers are unchanged.
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

import io
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch

from sconeflow import __version__
from sconeflow.errors import ModelError
from sconeflow.serving.model import pack_artifact
from sconeflow.training.augment import MEAN, STD
from sconeflow.training.model import InferenceGraph, count_macs, count_parameters
from sconeflow.training.train import TrainResult

FORMAT = "sconeflow-model/1"
ONNX_NAME, JSON_NAME = "model.onnx", "model.json"
OPSET = 17


EMBEDDING = "embedding"  # the second output's name, read by monitoring


class _WithEmbedding(torch.nn.Module):
    """The inference graph plus its embedding: x -> (probabilities, embedding).

    The embedding is what each net's `head` (the classifier layer) receives, taken with a
    forward pre-hook, so the nets' own code stays as it is and both families (compact,
    ResNet) work alike. With flip-TTA a net sees the image and its mirror as one batch of
    2B; their features are averaged, like their logits. (B, D * nets).
    """

    def __init__(self, graph: InferenceGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []
        heads: list[torch.nn.Module] = [net.head for net in self.graph.nets]  # type: ignore[misc]
        hooks = [h.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for h in heads]
        try:
            probs = self.graph(x)
        finally:
            for hook in hooks:
                hook.remove()
        n = x.shape[0]
        feats = [0.5 * (f[:n] + f[n:]) if self.graph.flip_tta else f for f in seen]
        return probs, torch.cat(feats, dim=1)


def export_onnx(result: TrainResult) -> bytes:
    """The calibrated inference graph as ONNX bytes (opset 17, dynamic batch), with the
    embedding as a second output."""
    graph = _WithEmbedding(result.inference_graph()).eval()
    _, h, w = result.hyperparameters.image_shape
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            graph,
            (torch.zeros(1, 3, h, w),),
            buffer,  # type: ignore[arg-type]  # file objects work; the stub says paths only
            input_names=["input"],
            output_names=["probabilities", EMBEDDING],
            dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"},
                          EMBEDDING: {0: "batch"}},
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
        "embedding_tensor": {
            "name": EMBEDDING,
            "dtype": "float32",
            "shape": ["batch", _embedding_size(result)],
            "layer": "classifier head input (pooled features), flip-averaged, nets concatenated",
            "use": "monitoring only (image-aware drift); serving returns probabilities alone",
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


def _embedding_size(result: TrainResult) -> int:
    """Features per image: the head's input width, summed over the nets."""
    heads: list[Any] = [net.head for net in result.nets]
    return sum(int(head.in_features) for head in heads)


def write_artifact(
    result: TrainResult,
    class_names: list[str],
    data_checksums: Mapping[str, str] | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
) -> bytes:
    """model.tar.gz bytes: model.onnx + model.json, byte-identical for identical inputs."""
    meta = build_metadata(result, class_names, data_checksums, extra_metrics)
    return pack_artifact(export_onnx(result), meta)


def _json_safe(value: Any) -> Any:
    """Metrics with NaN/inf turned into None, so model.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
