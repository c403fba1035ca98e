"""Check that ``small_cnn`` is a usable CPU default: >= 88 % on Fashion-MNIST in < 2 minutes.

Reads Fashion-MNIST straight from the files of the Debian package
``dataset-fashion-mnist`` (``make data`` installs it into
/usr/share/datasets/fashion-mnist), trains with a plain Adam loop and prints epochs, wall time and test accuracy. This is a check of
the architecture, not the project's training loop: no validation split, no early
stopping, the test set is read once at the end.

Run from the repository root::

    .venv/bin/python benchmarks/train_small_cnn.py              # 3 epochs, batch 128
    .venv/bin/python benchmarks/train_small_cnn.py --epochs 2 --no-channels-last
"""

from __future__ import annotations

import argparse
import gzip
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from resque.models import create_model

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path, header_bytes: int) -> np.ndarray:
    """The uint8 payload of a gzipped idx file (16-byte header for images, 8 for labels)."""
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header_bytes)


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` as floats in [0, 1] and labels ``(N,)`` as int64."""
    images = read_idx(DATA_DIR / f"{split}-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    labels = read_idx(DATA_DIR / f"{split}-labels-idx1-ubyte.gz", 8)
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += (logits.argmax(dim=1) == labels[start : start + batch_size]).sum().item()
    return correct / len(images)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores)")
    parser.add_argument(
        "--no-channels-last", dest="channels_last", action="store_false", help="keep the default NCHW layout"
    )
    args = parser.parse_args()

    if not (DATA_DIR / "train-images-idx3-ubyte.gz").exists():
        print(f"Fashion-MNIST not found in {DATA_DIR}; run `make data` (Debian package dataset-fashion-mnist).")
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_images, train_labels = load_split("train")
    test_images, test_labels = load_split("t10k")

    model = create_model("small_cnn", num_classes=10, in_channels=1, image_size=28)
    if args.channels_last:
        # oneDNN's CPU convolutions run about 1.7x faster on NHWC tensors (measured here).
        model = model.to(memory_format=torch.channels_last)
        train_images = train_images.contiguous(memory_format=torch.channels_last)
        test_images = test_images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = -(-len(train_images) // args.batch_size)
    # Cosine decay to zero over the run: a short run ends on small steps instead of noisy large ones.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * steps_per_epoch)
    print(
        f"small_cnn: {sum(p.numel() for p in model.parameters()):,} parameters; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{'channels_last' if args.channels_last else 'NCHW'}, batch {args.batch_size}, Adam lr {args.lr}"
    )

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_images))
        total_loss = 0.0
        for first in range(0, len(order), args.batch_size):
            index = order[first : first + args.batch_size]
            loss = F.cross_entropy(model(train_images[index]), train_labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(index)
        print(
            f"epoch {epoch}/{args.epochs}: train loss {total_loss / len(order):.4f}, "
            f"elapsed {time.perf_counter() - start:.1f} s"
        )
    train_seconds = time.perf_counter() - start
    test_accuracy = accuracy(model, test_images, test_labels)
    total_seconds = time.perf_counter() - start
    print(f"epochs: {args.epochs}")
    print(f"wall time: {train_seconds:.1f} s training, {total_seconds:.1f} s with the test pass")
    print(f"test accuracy: {100 * test_accuracy:.2f} %")
    passed = test_accuracy >= 0.88 and total_seconds < 120
    print("PASS (>= 88 % in < 120 s)" if passed else "FAIL (needs >= 88 % in < 120 s)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
