"""What augmenting replayed samples costs: sylvan's batched `crop_flip` against the per-sample
torchvision transforms that replay code usually applies to what it draws from its buffer
(`torch.stack([transform(x) for x in drawn])` with RandomCrop(32, padding=4) and
RandomHorizontalFlip on tensors), for batches of CIFAR-sized (3x32x32) images.

    python benchmarks/augmentation.py [--device cpu|cuda] [--batch_sizes 10 32 128] [--rounds 5]

Prints the microseconds per batch (best of `rounds`) of each and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision import transforms

from sylvan.settings.data.augmentation import RandomCropFlip


def seconds_per_call(function, repeats: int, rounds: int, device: str) -> float:
    best = float("inf")
    for _ in range(rounds):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[10, 32, 128])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    per_sample = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])
    batched = RandomCropFlip(padding=4, seed=0)
    print(f"crop (padding 4) + horizontal flip of 3x32x32 images on {args.device}, microseconds per batch "
          f"(best of {args.rounds} rounds); torch threads: {torch.get_num_threads()}")
    header = f"{'batch':>6} | {'batched':>10} {'per sample':>11} | {'x faster':>8}"
    print(header)
    print("-" * len(header))
    for batch_size in args.batch_sizes:
        x = torch.rand(batch_size, 3, 32, 32, device=args.device)
        repeats = max(20, 4000 // batch_size)
        fast = seconds_per_call(lambda x=x: batched(x), repeats, args.rounds, args.device)
        slow = seconds_per_call(lambda x=x: torch.stack([per_sample(sample) for sample in x]), repeats,
                                args.rounds, args.device)
        print(f"{batch_size:>6} | {1e6 * fast:10.1f} {1e6 * slow:11.1f} | {slow / fast:8.1f}", flush=True)


if __name__ == "__main__":
    main()
