"""Small models and data shared by the estimator tests (plain helpers, not fixtures)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset


def toy_cnn(seed: int = 0, classes: int = 3) -> nn.Sequential:
    """A random conv net; layer "1" is a (B, 8, H, W) post-ReLU output, "2" a pre-ReLU conv."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),  # "0"
        nn.ReLU(),  # "1"
        nn.Conv2d(8, 6, 3, padding=1),  # "2": can be negative, so angles may exceed 1/2
        nn.ReLU(),  # "3"
        nn.AdaptiveAvgPool2d(1),  # "4"
        nn.Flatten(),  # "5": (B, 6)
        nn.Linear(6, classes),  # "6"
    )


def patterned_images(n_per_class: int, classes: int = 3, size: int = 10, seed: int = 0) -> TensorDataset:
    """Images in [0, 1] whose class is a bright stripe at a class-specific row, plus mild noise."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for k in range(classes):
        x = 0.2 * torch.rand(n_per_class, 1, size, size, generator=g)
        row = (k * size) // classes
        x[:, :, row : row + 2, :] += 0.7
        images.append(x.clamp(0, 1))
        labels.append(torch.full((n_per_class,), k, dtype=torch.long))
    return TensorDataset(torch.cat(images), torch.cat(labels))


def with_gaussian_noise(data: TensorDataset, sigma: float, seed: int = 1) -> TensorDataset:
    images, labels = data.tensors
    g = torch.Generator().manual_seed(seed)
    noisy = (images + sigma * torch.randn(images.shape, generator=g)).clamp(0, 1)
    return TensorDataset(noisy, labels)


# --- slow, obvious reference implementations (numpy, one image at a time) ---------------------

def reference_embeddings(model: nn.Sequential, data: TensorDataset, upto: int, flatten: bool = False) -> np.ndarray:
    """Output of model[: upto + 1] for each image separately, pooled over space unless `flatten`."""
    model = model.eval()
    rows = []
    with torch.no_grad():
        for image, _ in data:
            out = model[: upto + 1](image[None]).numpy().astype(np.float64)[0]
            if out.ndim == 3:
                out = out.reshape(-1) if flatten else out.mean(axis=(1, 2))
            rows.append(out)
    return np.stack(rows)


def reference_dist(emb_o: np.ndarray, y_o: np.ndarray, emb_s: np.ndarray, y_s: np.ndarray) -> tuple[float, dict]:
    angles = {}
    for k in sorted(set(y_o.tolist())):
        a = emb_o[y_o == k].sum(axis=0)
        b = emb_s[y_s == k].sum(axis=0)
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        angles[k] = float(np.arccos(min(1.0, max(-1.0, cos))) / np.pi)
    return float(np.mean(list(angles.values()))), angles


def reference_kmeans(x: np.ndarray, centres: np.ndarray, iterations: int = 300) -> np.ndarray:
    """Plain Lloyd iterations until the assignment stops changing."""
    assign = None
    for _ in range(iterations):
        d = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        new = d.argmin(axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for j in range(centres.shape[0]):
            if np.any(assign == j):
                centres[j] = x[assign == j].mean(axis=0)
    return assign


def reference_ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index from the contingency table (Hubert & Arabie)."""
    def comb2(n):
        return n * (n - 1) / 2.0

    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    for i, j in zip(ai, bi):
        table[i, j] += 1
    index = comb2(table).sum()
    rows = comb2(table.sum(axis=1)).sum()
    cols = comb2(table.sum(axis=0)).sum()
    expected = rows * cols / comb2(len(a))
    return float((index - expected) / (0.5 * (rows + cols) - expected))
