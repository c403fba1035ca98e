"""How much the channels-last layout of the small CNN saves, measured side by side in one run.

    python benchmarks/bench_models.py

Times one evaluation batch (256 images, no gradient) and one training step
(batch 64, Adam) of ``small_cnn`` on Fashion-MNIST-sized inputs, with its
:class:`~resque.models.zoo.ChannelsLast` layer and with that layer replaced by
an identity, and prints the ratios (default layout / channels-last) and the
largest difference of their outputs. Machine time: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from resque.models.zoo import ChannelsLast, create_model


def _best_ms(work, repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def _without_channels_last(model: nn.Module) -> nn.Module:
    plain = copy.deepcopy(model)
    for parent in plain.modules():
        for name, child in parent.named_children():
            if isinstance(child, ChannelsLast):
                setattr(parent, name, nn.Identity())
    return plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    fast = create_model("small_cnn", num_classes=10, in_channels=1, image_size=28)
    plain = _without_channels_last(fast)
    images, batch, labels = torch.rand(256, 1, 28, 28), torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    rows = {}
    for name, model in (("default layout", plain), ("channels-last", fast)):
        model.eval()
        with torch.no_grad():
            evaluate = _best_ms(lambda: model(images), args.repeats)
        trained = copy.deepcopy(model).train()
        optimiser = torch.optim.Adam(trained.parameters(), lr=1e-3)

        def step():
            optimiser.zero_grad()
            nn.functional.cross_entropy(trained(batch), labels).backward()
            optimiser.step()

        rows[name] = (evaluate, _best_ms(step, args.repeats))
        print(f"{name:15s} evaluation batch of 256: {evaluate:7.1f} ms   training step of 64: {rows[name][1]:6.1f} ms")
    (eval_a, step_a), (eval_b, step_b) = rows["default layout"], rows["channels-last"]
    print(f"default / channels-last: evaluation {eval_a / eval_b:.2f}x, training step {step_a / step_b:.2f}x "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    with torch.no_grad():
        difference = (plain.eval()(images) - fast.eval()(images)).abs().max().item()
    print(f"largest difference of the outputs (logits): {difference:.2e}")


if __name__ == "__main__":
    main()
