"""What do the baseline predictors add to the forward pass they share?

On the `quick` profile's data (Fashion-MNIST, its `n_per_class` images per class
before the S0/S1/S2 split, the small CNN), this script times:

- one bare batched forward pass over the data a predictor reads (the unit);
- each baseline's own computation on the embeddings that pass produced
  (MMD, Fréchet distance and CKA for a shift; LogME, LEEP, NCE, H-score, GBC,
  k-NN and linear-probe accuracy for a task), and RESQUE's own for comparison,

and prints each as a multiple of the forward pass. A ratio below 1 means the
predictor adds less than one more forward pass. Median of `--repeats` runs,
with the range of the repeats (each repeat's time over the median pass) in
brackets: on a noisy machine, quote the range with the median.

Usage::

    python benchmarks/bench_baselines.py
    python benchmarks/bench_baselines.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import resque
from resque.predictors import shift as bd
from resque.predictors import transfer as bt
from resque.index.functional import class_angles
from resque.study.experiments import study_data
from resque.index.task import task_from_embeddings
from resque.cost.training import as_tensors
from resque.index.embedding import ForwardOptions


def timings(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_time(fn, repeats: int) -> float:
    return statistics.median(timings(fn, repeats))


def line(name: str, times: list[float], unit: float) -> str:
    t = statistics.median(times)
    spread = f"[{min(times) / unit:.2f}, {max(times) / unit:.2f}]"
    return (f"  {name:38s} {t:8.4f} s  = {t / unit:6.2f} x the forward pass {spread:>14s}  "
            f"{'OK' if t < unit else 'MORE than a pass'}")


def forward(model, images: torch.Tensor, batch_size: int = 256) -> None:
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = study_data("quick", 0)
    model = resque.create_model("small_cnn").eval()
    layer = resque.default_layer(model)
    original = as_tensors(data.original)
    shifted_set = resque.ShiftedDataset(data.shifted_base, "gaussian_noise", 0.2, seed=0)
    task = resque.subset(resque.load_task("fashion_coarse4"),
                         resque.subsample_per_class(resque.load_task("fashion_coarse4"), 750, seed=0))
    task_tensors = as_tensors(task)

    emb = bd.shift_embeddings(model, data.original, shifted_set, layer, progress=False)
    paired = bd.shift_embeddings(model, data.shifted_base, shifted_set, layer, progress=False)
    features, logits, labels = bt._collect_with_logits(model, task, layer, None, ForwardOptions(progress=False))
    probs = torch.softmax(logits, dim=1).numpy()

    pass_shift = median_time(lambda: (forward(model, original.images), forward(model, shifted_set.images_)), args.repeats)
    pass_task = median_time(lambda: forward(model, task_tensors.images), args.repeats)

    def class_sums(e, y):
        return torch.zeros(10, e.shape[1], dtype=torch.float64).index_add_(0, torch.as_tensor(y), torch.as_tensor(e))

    shift_costs = {
        "RESQUE_dist (class sums + angles)": lambda: class_angles(class_sums(emb.original, emb.labels_original),
                                                                  class_sums(emb.shifted, emb.labels_shifted)),
        "MMD (RBF, median heuristic)": lambda: bd.mmd_rbf(emb.original, emb.shifted),
        "Frechet distance": lambda: bd.frechet_distance(emb.original, emb.shifted),
        "linear CKA (paired)": lambda: bd.linear_cka(paired.original, paired.shifted),
    }
    task_costs = {
        "RESQUE_task (k-means from centroids)": lambda: task_from_embeddings(torch.as_tensor(features), torch.as_tensor(labels)),
        "LogME": lambda: bt.logme(features, labels),
        "LEEP": lambda: bt.leep(probs, labels),
        "NCE": lambda: bt.nce(probs, labels),
        "H-score": lambda: bt.h_score(features, labels),
        "GBC": lambda: bt.gbc(features, labels),
        "k-NN accuracy (5-fold)": lambda: bt.knn_accuracy(features, labels),
        "linear-probe accuracy (5-fold)": lambda: bt.linear_probe_accuracy(features, labels),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; small CNN, layer {layer!r}; "
          f"median of {args.repeats} [range]")
    print(f"shift data: {len(original)} original + {len(shifted_set)} shifted images; "
          f"one forward pass over both = {pass_shift:.3f} s")
    for name, fn in shift_costs.items():
        print(line(name, timings(fn, args.repeats), pass_shift), flush=True)
    print(f"task data: {len(task_tensors)} images (fashion_coarse4); one forward pass = {pass_task:.3f} s")
    for name, fn in task_costs.items():
        print(line(name, timings(fn, args.repeats), pass_task), flush=True)


if __name__ == "__main__":
    main()
