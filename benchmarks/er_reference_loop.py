"""Cross-check of `rehearsal`, `der`, `derpp`, `agem` and `si` on Seq-MNIST without Lightning or
sylvan's buffers: each written as a plain PyTorch loop, step for step as in the DER paper's
reference code (numpy reservoir sampling one sample at a time, `np.random.choice` without
replacement for the replayed samples, one forward pass per group as in its `observe`; A-GEM's
memory takes buffer_size / tasks random samples of each finished task; SI accumulates
lr * grad^2 of the clipped gradients and consolidates at each task's end). Same data (sylvan's
Seq-MNIST tasks), same MLP and initialization.

    python benchmarks/er_reference_loop.py --seeds 0 1 2 3 4 5 6 7 --lr 0.01 --buffer_size 200
    python benchmarks/er_reference_loop.py --method der --lr 0.03 --alpha 0.2 --buffer_size 200
    python benchmarks/er_reference_loop.py --method derpp --lr 0.03 --alpha 0.2 --beta 1 --replay 128
    python benchmarks/er_reference_loop.py --method agem --lr 0.1 --buffer_size 500 --replay 128
    python benchmarks/er_reference_loop.py --method agem --lr 0.1 --replay 128 --agem_per_task 10
    python benchmarks/er_reference_loop.py --method si --lr 0.1 --c 1 --xi 0.9 --setting_order

If its accuracies and `benchmarks/seq_mnist.py`'s have the same distribution over seeds, a gap
to a published figure does not come from sylvan's training pipeline.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from sylvan.minibatches import float_inputs
from sylvan.models import MLP
from sylvan.settings import ClassIncrementalSetting
from sylvan.settings.online import DEFAULT_DATA_DIR


def agem_backward(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, memory_x: torch.Tensor,
                  memory_y: torch.Tensor, replay: int) -> None:
    """A-GEM's step as its reference code takes it: the minibatch gradient, projected when it
    conflicts with the gradient on `replay` random memory samples."""
    parameters = list(net.parameters())
    F.cross_entropy(net(x), y).backward()
    if len(memory_y) == 0:
        return
    gradient = torch.cat([p.grad.flatten() for p in parameters])
    net.zero_grad()
    chosen = np.random.choice(len(memory_y), size=min(replay, len(memory_y)), replace=False)
    F.cross_entropy(net(memory_x[chosen]), memory_y[chosen]).backward()
    reference = torch.cat([p.grad.flatten() for p in parameters])
    dot = torch.dot(gradient, reference)
    if dot < 0:
        gradient = gradient - dot / torch.dot(reference, reference) * reference
    offset = 0
    for p in parameters:
        p.grad.copy_(gradient[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


class ReferenceSI:
    """SI as the DER paper's reference code takes it, on the flattened parameters: the loss of
    later tasks adds c * sum(Omega * (w - w*)^2); after each backward pass the gradient values
    are clipped to [-1, 1] and omega += lr * grad^2 (the path integral of plain SGD); at a task's
    end Omega += omega / ((w - w*)^2 + xi), then w* = w and omega = 0."""

    def __init__(self, net: torch.nn.Module, lr: float, c: float, xi: float) -> None:
        self.net, self.lr, self.c, self.xi = net, lr, c, xi
        self.anchor = self.flat_weights()
        self.omega = torch.zeros_like(self.anchor)
        self.importance: torch.Tensor | None = None

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.net.parameters()]).clone()

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(self.net(x), y)
        if self.importance is not None:
            weights = torch.cat([p.flatten() for p in self.net.parameters()])
            loss = loss + self.c * (self.importance * (weights - self.anchor) ** 2).sum()
        loss.backward()
        torch.nn.utils.clip_grad_value_(self.net.parameters(), 1.0)
        self.omega += self.lr * torch.cat([p.grad.flatten() for p in self.net.parameters()]) ** 2

    def end_task(self) -> None:
        weights = self.flat_weights()
        if self.importance is None:
            self.importance = torch.zeros_like(weights)
        self.importance += self.omega / ((weights - self.anchor) ** 2 + self.xi)
        self.anchor, self.omega = weights, torch.zeros_like(weights)


def run(seed: int, lr: float, capacity: int, data_dir: str, method: str = "er", batch_size: int = 10,
        replay: int = 10, alpha: float = 0.0, beta: float = 0.0, c: float = 1.0, xi: float = 0.9,
        setting_order: bool = False, agem_per_task: int | None = None) -> float:
    torch.manual_seed(seed)
    np.random.seed(seed)
    setting = ClassIncrementalSetting(dataset="mnist", batch_size=batch_size, epochs=1, seed=seed,
                                      data_dir=data_dir, progress_bar=False)
    tasks = [  # float inputs throughout, as a plain PyTorch loop would hold them
        replace(task, x_train=float_inputs(task.x_train), x_test=float_inputs(task.x_test))
        for task in setting.prepare_tasks()
    ]
    net = MLP((1, 28, 28), 10)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    stored_x = torch.zeros(capacity, 1, 28, 28)
    stored_y = torch.zeros(capacity, dtype=torch.long)
    stored_logits = torch.zeros(capacity, 10)
    seen = 0
    si = ReferenceSI(net, lr, c, xi) if method == "si" else None

    def draw() -> np.ndarray:
        available = min(seen, capacity)
        return np.random.choice(available, size=min(replay, available), replace=False)

    for task in tasks:
        if method == "agem" and task.task_id > 0:  # A-GEM: a random share of the finished task
            previous = tasks[task.task_id - 1]
            per_task = capacity // len(tasks) if agem_per_task is None else agem_per_task
            keep = np.random.choice(len(previous.y_train), size=per_task, replace=False)
            stored_x[seen : seen + len(keep)], stored_y[seen : seen + len(keep)] = (
                previous.x_train[keep], previous.y_train[keep])
            seen += len(keep)
        if setting_order:  # the order the setting's own loader gives this task (seeded per task)
            loader = setting.train_loader(TensorDataset(task.y_train), shuffle=True, offset=task.task_id)
            order = torch.tensor(list(loader.sampler))
        else:
            order = torch.randperm(len(task.y_train))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x, y = task.x_train[index], task.y_train[index]
            optimizer.zero_grad()
            if si is not None:
                si.backward(x, y)
                optimizer.step()
                continue
            if method == "agem":  # no reservoir: the memory is filled at task boundaries
                agem_backward(net, x, y, stored_x[:seen], stored_y[:seen], replay)
                optimizer.step()
                continue
            if method == "er":
                if seen:
                    chosen = draw()
                    x_all, y_all = torch.cat([x, stored_x[chosen]]), torch.cat([y, stored_y[chosen]])
                else:
                    x_all, y_all = x, y
                out = net(x_all)
                logits, loss = out[: len(y)], F.cross_entropy(out, y_all)
            else:  # der, derpp
                logits = net(x)
                loss = F.cross_entropy(logits, y)
                if seen:
                    chosen = draw()
                    loss = loss + alpha * F.mse_loss(net(stored_x[chosen]), stored_logits[chosen])
                    if method == "derpp":
                        chosen = draw()
                        loss = loss + beta * F.cross_entropy(net(stored_x[chosen]), stored_y[chosen])
            loss.backward()
            optimizer.step()
            for j in range(len(y)):  # reservoir sampling, one sample at a time
                slot = seen if seen < capacity else np.random.randint(0, seen + 1)
                if slot < capacity:
                    stored_x[slot], stored_y[slot], stored_logits[slot] = x[j], y[j], logits[j].detach()
                seen += 1
        if si is not None:
            si.end_task()
    with torch.no_grad():
        accuracies = [(net(t.x_test).argmax(1) == t.y_test).float().mean().item() for t in tasks]
    return 100 * float(np.mean(accuracies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--buffer_size", type=int, default=200)
    parser.add_argument("--method", choices=["er", "der", "derpp", "agem", "si"], default="er")
    parser.add_argument("--replay", type=int, default=10,
                        help="samples in each replayed group (A-GEM: in the reference gradient's batch)")
    parser.add_argument("--alpha", type=float, default=0.0, help="DER: weight of the logit MSE")
    parser.add_argument("--beta", type=float, default=0.0, help="DER++: weight of the replayed labels' CE")
    parser.add_argument("--c", type=float, default=1.0, help="SI: strength of the penalty")
    parser.add_argument("--xi", type=float, default=0.9, help="SI: damping")
    parser.add_argument("--agem_per_task", type=int, default=None,
                        help="A-GEM: samples stored per finished task (default buffer_size / tasks; the "
                             "reference code's end_task stores one training minibatch, i.e. batch_size)")
    parser.add_argument("--setting_order", action="store_true",
                        help="shuffle each task as sylvan's setting does (seeded per task) instead of with "
                             "torch's global generator: the same data order as a sylvan run with that seed")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    scores = []
    for seed in args.seeds:
        scores.append(run(seed, args.lr, args.buffer_size, args.data_dir, method=args.method, replay=args.replay,
                          alpha=args.alpha, beta=args.beta, c=args.c, xi=args.xi,
                          setting_order=args.setting_order, agem_per_task=args.agem_per_task))
        print(f"seed {seed}: class-IL {scores[-1]:.2f}", flush=True)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    memory = "" if args.method == "si" else f", buffer {args.buffer_size}"  # SI stores no samples
    print(f"reference {args.method} loop{memory}, lr {args.lr}: "
          f"{statistics.mean(scores):.2f} ± {std:.2f} (median {statistics.median(scores):.2f}) "
          f"over {len(scores)} seeds")


if __name__ == "__main__":
    main()
