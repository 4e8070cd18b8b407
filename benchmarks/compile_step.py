"""What `torch.compile` buys a training step, in a plain PyTorch loop (no sylvan, no Lightning).

The step of the Seq-MNIST MLP (784-100-100-10, batch 10) and, where asked, of the Seq-CIFAR-10
ResNet-18 (batch 32): forward, cross-entropy, backward, SGD step, eager and with the network
compiled (`nn.Module.compile()`, inductor, default mode), on random inputs of the right shape. It
prints the median step after the first (warm) ones, and what the first compiled step took (the
compilation). A compiled step is what sylvan's would gain at most: if the plain loop gains nothing,
neither would a run.

    python benchmarks/compile_step.py [--device cpu|cuda] [--networks mlp resnet18] [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from sylvan.models import build_backbone

SHAPES = {"mlp": ((1, 28, 28), 10), "resnet18": ((3, 32, 32), 32)}  # input shape, batch size


def network(name: str) -> torch.nn.Module:
    """sylvan's backbone `name` (the same network as a run's), seeded."""
    torch.manual_seed(0)
    return build_backbone(name, SHAPES[name][0], 10)


def step_times(name: str, compiled: bool, device: torch.device, steps: int, warm: int = 5) -> tuple[float, float]:
    """(seconds of the first step, median seconds of a step after `warm` steps) of `name`."""
    shape, batch = SHAPES[name]
    net = network(name).to(device)
    if compiled:
        net.compile()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.03)
    x = torch.rand(steps + warm, batch, *shape, device=device)
    y = torch.randint(0, 10, (steps + warm, batch), device=device)
    times = []
    for i in range(steps + warm):
        start = time.perf_counter()
        loss = F.cross_entropy(net(x[i]), y[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[warm:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--networks", nargs="+", choices=list(SHAPES), default=["mlp"])
    parser.add_argument("--modes", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, one thread"
    print(f"Training step, plain PyTorch loop, {card}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"median of {args.steps} steps after 5")
    print(f"{'network':>9} {'batch':>5} {'mode':>9} | {'first step s':>12} {'step ms':>8} {'/ eager':>7}")
    for name in args.networks:
        eager = None
        for mode in args.modes:
            first, median = step_times(name, mode == "compiled", device, args.steps)
            eager = median if mode == "eager" else eager
            ratio = f"{median / eager:7.2f}" if eager else f"{'':>7}"
            print(f"{name:>9} {SHAPES[name][1]:>5} {mode:>9} | {first:12.3f} {1000 * median:8.3f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
