"""Images to tensors and the training augmentations, all as batch tensor ops.

`to_tensor` normalises uint8 (N, H, W, 3) pixels with the statistics below, which model.json
records for serving. Each augmentation takes a batch (B, C, H, W) and a torch.Generator, so a
seeded job draws the same augmentations every time.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from sconeflow.training.hyperparameters import Hyperparameters

# Per-channel statistics of CIFAR-100 bicycle+motorcycle training images, on pixel/255.
MEAN = (0.529, 0.514, 0.488)
STD = (0.260, 0.259, 0.269)


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
