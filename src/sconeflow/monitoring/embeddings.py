"""Image-aware drift: the network's own embedding of each captured image, and an MMD test.

Image statistics (brightness, sharpness...) see how a photo was taken, not what it shows: a
rotated camera, a zoomed crop or another kind of vehicle leave them unchanged. The model's
embedding (the input of its classifier head, exported as the ONNX output "embedding",
see sconeflow.training.artifact) is what the model bases its answer on, so a change there
is a change that matters to the model.

Recomputed, not captured. The monitor runs the deployed model's graph on the captured image
bytes (the same decode and normalisation as the endpoint) and asks for "embedding" alone.
The alternative, a capture field written by the endpoint, was measured in one run on the
development machine (benchmarks/monitor_bench.py --cost): see docs/monitoring.md. Capture
stays Model Monitor's exact format, serving's request path does no extra work, and an
artifact without the output (older models) still serves and is still monitored, without
this one test.

The test: maximum mean discrepancy (Gretton et al., JMLR 2012) with a Gaussian kernel whose
bandwidth is the median pairwise distance (the median heuristic), and a permutation test of
the unbiased MMD^2 (as alibi-detect's MMDDrift does). Permutations give an exact p-value for
any sample size, with no assumption on the distribution of 128-dimensional features; one
kernel matrix serves every permutation, so 2,000 of them cost a few matrix products.
Before the kernel, the pooled rows are whitened by their own covariance, shrunk 10% toward a
scaled identity (so it is well conditioned with fewer rows than dimensions): a Gaussian
kernel on raw or merely standardised features is dominated by the few directions of large
variance, while a camera change often moves the embedding along quiet ones. Measured with
the benchmark's small CNN (300 baseline images, 46 distinct rotated ones): p = 0.23 on
standardised features, 0.24 on their first 10 principal components, 0.001 whitened; on the
dev tarball's model, 20 images of a rotated camera 0.12 -> 0.008, JPEG quality 10 0.12 ->
0.003, while 50 clean images stay at p = 0.91 (level checked over repeated clean windows).
The whitening is computed from the *pooled* sample, the same for every relabelling, so the
permutation p-value stays exact at any size. Both samples are capped at 500 rows (seeded
random subsets): the kernel matrix stays small.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDING_OUTPUT = "embedding"
MAX_ROWS = 500  # rows per sample in the test (and kept in the baseline)
PERMUTATIONS = 2000  # p-values down to 1/2001, small enough to survive the correction
SHRINKAGE = 0.1  # of the pooled covariance toward a scaled identity, before whitening
_CHUNK = 250  # permutations per matrix product


@dataclass(frozen=True)
class Embedder:
    """An onnxruntime session asked for the embedding output only."""

    session: Any
    meta: Any  # sconeflow.serving.model.ModelMeta
    digest: str  # sha256 of model.onnx: baselines compare embeddings of the same model only
    dim: int


def load_embedder(model_dir: Path) -> tuple[Embedder | None, str]:
    """(Embedder, "") for a model folder whose graph has the embedding output, else
    (None, why not) - older artifacts have none and are monitored without this test."""
    import onnxruntime as ort

    from sconeflow.serving.model import ONNX_NAME, read_meta

    meta = read_meta(model_dir)
    onnx_path = Path(model_dir) / ONNX_NAME
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    outputs = {o.name: o for o in session.get_outputs()}
    if EMBEDDING_OUTPUT not in outputs:
        return None, (f"the model's graph has no {EMBEDDING_OUTPUT!r} output (trained before "
                      "sconeflow exported one), so embedding drift is not tested")
    shape = outputs[EMBEDDING_OUTPUT].shape
    dim = shape[-1] if isinstance(shape[-1], int) else 0
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    return Embedder(session, meta, digest, dim), ""


def embed(embedder: Embedder, images: Sequence[bytes], batch: int = 64) -> np.ndarray:
    """(N, D) float32 embeddings of encoded images; NaN rows where the endpoint would have
    refused the image (undecodable, wrong size)."""
    from sconeflow.serving.inference import InvalidImageError, decode, normalize

    ok: list[int] = []
    pixels: list[np.ndarray] = []
    for i, data in enumerate(images):
        try:
            pixels.append(decode(data, embedder.meta))
            ok.append(i)
        except InvalidImageError:
            continue
    chunks = []
    for start in range(0, len(ok), batch):
        x = normalize(np.stack(pixels[start:start + batch]), embedder.meta)  # (B, C, H, W)
        (emb,) = embedder.session.run([EMBEDDING_OUTPUT], {embedder.meta.input: x})
        chunks.append(np.asarray(emb, dtype=np.float32))  # (B, D)
    dim = chunks[0].shape[1] if chunks else max(embedder.dim, 1)
    out = np.full((len(images), dim), np.nan, dtype=np.float32)
    if chunks:
        out[ok] = np.concatenate(chunks)
    return out


def subsample(rows: np.ndarray, limit: int = MAX_ROWS, seed: int = 0) -> np.ndarray:
    """At most `limit` rows (a seeded random subset, order kept), without NaN rows."""
    rows = rows[~np.isnan(rows).any(axis=1)]
    if len(rows) <= limit:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
    return rows[keep]


@dataclass(frozen=True)
class MmdResult:
    mmd2: float  # unbiased MMD^2 of the two samples (can be slightly negative by chance)
    p_value: float  # permutation p-value, (1 + #{null >= observed}) / (1 + permutations)
    bandwidth: float  # Gaussian kernel sigma (median heuristic), standardised units
    null: np.ndarray  # (permutations,) MMD^2 under random relabelling, for the plot
    n_baseline: int
    n_window: int


def mmd_test(baseline: np.ndarray, window: np.ndarray, *, permutations: int = PERMUTATIONS,
             seed: int = 0) -> MmdResult:
    """Two-sample MMD permutation test of (m, D) baseline rows against (n, D) window rows."""
    x = subsample(np.asarray(baseline, dtype=np.float64), seed=seed)
    y = subsample(np.asarray(window, dtype=np.float64), seed=seed + 1)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"MMD needs at least 2 rows per sample, got {m} and {n}")
    z = _reduce(np.vstack([x, y]))  # (N, D), whitened
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)  # (N, N)
    upper = d2[np.triu_indices(len(z), k=1)]
    sigma2 = float(np.median(upper)) or float(np.mean(upper)) or 1.0
    kernel = np.exp(-d2 / (2.0 * sigma2))
    np.fill_diagonal(kernel, 0.0)  # unbiased: no i == j terms
    total = float(kernel.sum())
    is_x = np.zeros(len(z))
    is_x[:m] = 1.0
    observed = float(_mmd2(is_x[None, :], kernel, total, m, n)[0])
    rng = np.random.default_rng(seed)
    null = np.empty(permutations)
    for start in range(0, permutations, _CHUNK):
        k = min(_CHUNK, permutations - start)
        labels = np.argsort(rng.random((k, len(z))), axis=1) < m  # (k, N) random X sets
        null[start:start + k] = _mmd2(labels.astype(np.float64), kernel, total, m, n)
    p = (1.0 + float(np.sum(null >= observed))) / (1.0 + permutations)
    return MmdResult(observed, p, float(np.sqrt(sigma2)), null, m, n)


def _reduce(pooled: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray:
    """Pooled rows whitened by their own shrunk covariance: (N, D), Mahalanobis geometry.
    Label-free, so every permutation of the test sees the same points."""
    z = pooled - pooled.mean(axis=0)
    cov = np.cov(z, rowvar=False) if len(z) > 1 else np.eye(z.shape[1])
    cov = np.atleast_2d(cov)
    dim = cov.shape[0]
    target = max(float(np.trace(cov)) / dim, 1e-12)
    cov = (1.0 - shrinkage) * cov + shrinkage * target * np.eye(dim)
    values, vectors = np.linalg.eigh(cov)
    return (z @ vectors) / np.sqrt(np.maximum(values, 1e-12 * target))


def _mmd2(a: np.ndarray, kernel: np.ndarray, total: float, m: int, n: int) -> np.ndarray:
    """Unbiased MMD^2 for each row of `a` (B, N), a 0/1 indicator of the baseline set, given
    the kernel matrix with a zero diagonal and its sum."""
    ak = a @ kernel  # (B, N)
    xx = np.sum(ak * a, axis=1)
    xy = np.sum(ak * (1.0 - a), axis=1)
    yy = total - xx - 2.0 * xy
    return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2.0 * xy / (m * n)


def project_2d(baseline: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Both samples on the baseline's first two principal components (standardised), for a
    picture of where the window sits; and the share of baseline variance those two explain."""
    x, y = subsample(baseline), subsample(window, seed=1)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    xs, ys = (x - mean) / std, (y - mean) / std
    _, s, vt = np.linalg.svd(xs, full_matrices=False)
    explained = float(np.sum(s[:2] ** 2) / max(np.sum(s**2), 1e-12))
    return xs @ vt[:2].T, ys @ vt[:2].T, explained
