"""The networks: our compact CIFAR net (the default) and SageMaker-style ResNets.

Compact net (default `ModelConfig()`), for 3x32x32 inputs:
    stem   conv3x3 3->24, BN, GELU                      (B, 24, 32, 32)
    block  conv3x3 24->32, maxpool2, BN, GELU, conv3x3, BN, GELU   (B, 32, 16, 16)
    block  conv3x3 32->64, ...                          (B, 64, 8, 8)
    block  conv3x3 64->128, ...                         (B, 128, 4, 4)
    head   global max pool, linear 128->classes, times 1/8
  24.3 M multiply-accumulates (48.5 MFLOPs) per image and 294,456 parameters for 2 classes
  (`count_macs`, `count_parameters`). The exported graph runs it twice (flip-TTA).

`num_layers` from the hyperparameters selects a ResNet instead: depths 20/32/44/56/110 are
CIFAR-style (6n+2, basic blocks, widths 16/32/64); 18/34 (basic) and 50/101/152/200
(bottleneck) use ImageNet stage counts with a 3x3 stem and no max pool, since inputs are tiny.

`ModelConfig` is saved in the artifact (model.json), so `build_model(config)` rebuilds the
exact network; `InferenceGraph` wraps trained nets with flip-TTA, temperature and softmax,
and is what gets exported to ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; stored in model.json."""

    family: str = "compact"  # "compact" | "resnet"
    num_classes: int = 2
    widths: tuple[int, ...] = (24, 32, 64, 128)  # compact: stem width, then one per block
    depth: int = 0  # resnet only: the SageMaker num_layers
    logit_scale: float = 1 / 8  # compact head multiplier (keeps early logits small)
    extra: dict[str, str] = field(default_factory=dict)  # room for later additions

    @staticmethod
    def from_dict(data: dict[str, object]) -> ModelConfig:
        widths = data.get("widths", (24, 32, 64, 128))
        extra = data.get("extra", {})
        return ModelConfig(
            family=str(data.get("family", "compact")),
            num_classes=int(str(data.get("num_classes", 2))),
            widths=tuple(int(w) for w in widths) if isinstance(widths, list | tuple) else (),
            depth=int(str(data.get("depth", 0))),
            logit_scale=float(str(data.get("logit_scale", 1 / 8))),
            extra=dict(extra) if isinstance(extra, dict) else {},
        )


class _ConvBlock(nn.Module):
    """conv -> maxpool -> BN -> GELU -> conv -> BN -> GELU (airbench's block): halves H, W."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class CompactNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        stem, *widths = config.widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.GELU()
        )
        blocks: list[nn.Module] = []
        c_in = stem
        for width in widths:
            blocks.append(_ConvBlock(c_in, width))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, config.num_classes, bias=False)
        self.logit_scale = config.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, classes)
        x = self.blocks(self.stem(x))
        x = torch.amax(x, dim=(2, 3))  # global max pool, (B, C)
        return self.head(x) * self.logit_scale


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.short = _shortcut(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * 4
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.short = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + self.short(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


# ImageNet-style stage counts, as in MXNet's resnet symbol that SageMaker's algorithm uses.
_IMAGENET_STAGES = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}


class ResNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        depth = config.depth
        block: type[_Basic] | type[_Bottleneck]
        stages: tuple[int, ...]
        widths: tuple[int, ...]
        if depth in _IMAGENET_STAGES:
            stages, widths = _IMAGENET_STAGES[depth], (64, 128, 256, 512)
            block = _Basic if depth < 50 else _Bottleneck
        elif depth >= 8 and (depth - 2) % 6 == 0:
            n = (depth - 2) // 6
            stages, widths, block = (n, n, n), (16, 32, 64), _Basic
        else:
            raise ValueError(f"no ResNet of depth {depth}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        c_in = widths[0]
        for i, (count, width) in enumerate(zip(stages, widths, strict=True)):
            for j in range(count):
                layers.append(block(c_in, width, 2 if (i > 0 and j == 0) else 1))
                c_in = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, classes)
        x = self.layers(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised network for `config` (seed torch first for repeatability)."""
    if config.family == "compact":
        return CompactNet(config)
    if config.family == "resnet":
        return ResNet(config)
    raise ValueError(f"unknown model family {config.family!r}; expected compact or resnet")


class InferenceGraph(nn.Module):
    """Normalised images (B, 3, H, W) -> calibrated class probabilities (B, classes).

    logits = mean over nets of the net's logits, averaged with the mirrored image's logits
    when `flip_tta`; probabilities = softmax(logits / temperature). The image and its mirror
    go through each net as one batch of 2B.
    """

    def __init__(self, nets: list[nn.Module], temperature: float, flip_tta: bool) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.inv_temperature: torch.Tensor
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature))
        self.flip_tta = flip_tta

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.flip_tta:
            x = torch.cat([x, x.flip(3)])  # (2B, 3, H, W)
        out = torch.stack([net(x) for net in self.nets]).mean(0)
        if self.flip_tta:
            out = 0.5 * (out[:n] + out[n:])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x) * self.inv_temperature, dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_shape: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Multiply-accumulates of conv and linear layers for one image (FLOPs ~ 2 x MACs)."""
    total = 0

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * module.in_channels * k // module.groups
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *image_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
