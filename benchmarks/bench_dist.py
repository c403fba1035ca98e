"""How fast is `resque_dist`? Three ways of computing one RESQUE_dist, timed side by side.

(a) a bare inference loop: the same batched forward passes over original and
    shifted data, doing nothing with the outputs (the floor);
(b) ``resque.resque_dist`` (streaming class sums, one batched pass per dataset);
(c) the authors' algorithm, written here from its description: for every
    class, a fresh pass over the data one image at a time (batch size 1),
    forwarding each image and keeping the embeddings of that class's images;
(d) a kinder reading of (c), for scale: the same per-class batch-size-1 passes,
    but only the class's own images are forwarded (each image once in total).

All three run on the same model and the same images in one process, in
interleaved repeats; the script prints the median times, the ratios, and the
largest difference between the values.

Usage::

    python benchmarks/bench_dist.py                      # small CNN, Fashion-MNIST shaped data
    python benchmarks/bench_dist.py --images 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import resque


def benchmark_model(classes: int) -> tuple[nn.Module, str]:
    """The project's small CNN when the model registry is present, else an equivalent stand-in."""
    try:
        from resque.models import create_model, default_layer
    except ImportError:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, classes),
        )
        return model, "10"
    model = create_model("small_cnn", num_classes=classes)
    return model, default_layer(model)


def images(n: int, classes: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.arange(n) % classes
    return TensorDataset(x, y)


def bare_inference(model, datasets, batch_size):
    with torch.no_grad():
        for data in datasets:
            for x, _ in DataLoader(data, batch_size=batch_size):
                model(x)


def authors_algorithm(model, original, shifted, layer, classes, forward_all=True):
    """One pass per class, batch size 1 (written here from the protocol's description).

    With `forward_all`, every image is forwarded in every class's pass and the
    embedding kept only when the label matches; otherwise other classes' images
    are skipped before the forward pass.
    """
    module = dict(model.named_modules())[layer]
    captured = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o))
    angles = []
    try:
        with torch.no_grad():
            for k in range(classes):
                sums = []
                for data in (original, shifted):
                    total = None
                    for x, y in DataLoader(data, batch_size=1):
                        if not forward_all and int(y) != k:
                            continue
                        captured.clear()
                        model(x)
                        if int(y) != k:
                            continue
                        e = captured[0].double()
                        e = e.mean(dim=(2, 3)) if e.ndim == 4 else e
                        total = e[0] if total is None else total + e[0]
                    sums.append(total)
                cos = torch.dot(sums[0], sums[1]) / (sums[0].norm() * sums[1].norm())
                angles.append(math.acos(max(-1.0, min(1.0, float(cos)))) / math.pi)
    finally:
        handle.remove()
    return sum(angles) / len(angles)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images in each of the two datasets")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model, layer = benchmark_model(args.classes)
    model.eval()
    original = images(args.images, args.classes, seed=0)
    shifted_x = (original.tensors[0] + 0.2 * torch.randn(original.tensors[0].shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    shifted = TensorDataset(shifted_x, original.tensors[1])

    runs = {"bare": [], "resque": [], "authors": [], "skipping": []}
    values = {}
    bare_inference(model, (original,), args.batch_size)  # warm-up (allocator, kernels)
    for _ in range(args.repeats):
        runs["bare"].append(timed(lambda: bare_inference(model, (original, shifted), args.batch_size))[0])
        t, v = timed(lambda: float(resque.resque_dist(model, original, shifted, layer, batch_size=args.batch_size, progress=False)))
        runs["resque"].append(t)
        values["resque"] = v
    # (c) is slow: one repeat is enough to know the order of magnitude
    t, v = timed(lambda: authors_algorithm(model, original, shifted, layer, args.classes))
    runs["authors"].append(t)
    values["authors"] = v
    t, v = timed(lambda: authors_algorithm(model, original, shifted, layer, args.classes, forward_all=False))
    runs["skipping"].append(t)
    values["skipping"] = v

    median = {name: statistics.median(ts) for name, ts in runs.items()}
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model layer {layer!r}; "
          f"{args.images} + {args.images} images 1x28x28, {args.classes} classes, batch {args.batch_size}")
    print(f"(a) bare inference      {median['bare']:8.3f} s  (median of {args.repeats})")
    print(f"(b) resque_dist         {median['resque']:8.3f} s  (median of {args.repeats})")
    print(f"(c) authors' algorithm  {median['authors']:8.3f} s  (1 run)")
    print(f"(d) (c) forwarding only the class's images {median['skipping']:8.3f} s  (1 run)")
    print(f"resque_dist / bare inference      = {median['resque'] / median['bare']:.3f}x  (target <= 1.10)")
    print(f"authors' algorithm / resque_dist  = {median['authors'] / median['resque']:.1f}x  (target >= 50)")
    print(f"(d) / resque_dist                 = {median['skipping'] / median['resque']:.1f}x")
    print(f"|value(b) - value(c)|             = {abs(values['resque'] - values['authors']):.2e}  (target <= 1e-6); "
          f"RESQUE_dist = {values['resque']:.6f}")


if __name__ == "__main__":
    main()
