"""Cross-check of `rehearsal`, `der`, `derpp`, `agem`, `si`, `ewc`, GSS and `hal` on Seq-MNIST (or P-MNIST)
without Lightning or sylvan's buffers: each written as a plain PyTorch loop, step for step as in
the DER paper's reference code (numpy reservoir sampling one sample at a time, `np.random.choice`
without replacement for the replayed samples, one forward pass per group as in its `observe`;
A-GEM's memory takes buffer_size / tasks random samples of each finished task; SI accumulates
lr * grad^2 of the clipped gradients and consolidates at each task's end; online EWC sums
p(y|x)-weighted squared gradients of each sample's log-likelihood at each task's end; GSS as its buffer
admits samples, `ReferenceGSS`; HAL's two steps and anchors, `ReferenceHAL`). Same data
(sylvan's Seq-MNIST tasks, or with `--perm_mnist` / `--rot_mnist` its 20 permuted / rotated
MNIST tasks at batch 128, the angles drawn with the seed as sylvan's R-MNIST draws them),
same MLP and initialization.

    python benchmarks/er_reference_loop.py --seeds 0 1 2 3 4 5 6 7 --lr 0.01 --buffer_size 200
    python benchmarks/er_reference_loop.py --method der --lr 0.03 --alpha 0.2 --buffer_size 200
    python benchmarks/er_reference_loop.py --method derpp --lr 0.03 --alpha 0.2 --beta 1 --replay 128
    python benchmarks/er_reference_loop.py --method agem --lr 0.1 --buffer_size 500 --replay 128
    python benchmarks/er_reference_loop.py --method agem --lr 0.1 --replay 128 --agem_per_task 10
    python benchmarks/er_reference_loop.py --method si --lr 0.1 --c 1 --xi 0.9 --setting_order
    python benchmarks/er_reference_loop.py --method gss --perm_mnist --lr 0.2 --replay 10 --gss_compared 128
    python benchmarks/er_reference_loop.py --method ewc --perm_mnist --lr 0.1 --e_lambda 0.7 --ewc_gamma 1
    python benchmarks/er_reference_loop.py --method hal --perm_mnist --lr 0.1 --replay 128 --hal_beta 0.5

If its accuracies and `benchmarks/seq_mnist.py`'s have the same distribution over seeds, a gap
to a published figure does not come from sylvan's training pipeline.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap
from torch.utils.data import TensorDataset

from sylvan.minibatches import float_inputs
from sylvan.models import MLP
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting
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


def flat_weights(net: torch.nn.Module) -> torch.Tensor:
    """The parameters, flattened into one vector (a copy), as the reference code's `get_params`."""
    return torch.cat([p.detach().flatten() for p in net.parameters()]).clone()


def quadratic_penalty(net: torch.nn.Module, importance: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """sum(importance * (w - anchor)^2) over the flattened parameters w, differentiable in w."""
    weights = torch.cat([p.flatten() for p in net.parameters()])
    return (importance * (weights - anchor) ** 2).sum()


class ReferenceEWC:
    """Online EWC as the DER paper's reference code takes it (its `models/ewc_on.py`): the loss of
    later tasks adds e_lambda * sum(F * (w - w*)^2) on the flattened parameters; at a task's end
    F <- gamma * F + F_task, F_task summing p(y|x) * (d log p(y|x) / dw)^2 over the task's
    training samples, divided by the number of minibatches times the batch size. The code takes
    one sample at a time; here each `Linear` layer's per-sample gradient, the outer product of
    the gradient at its output and its input, gives the same sums `chunk` samples at a time:
    sum_i p_i (d_i a_i^T)^2 = (p * d^2)^T a^2."""

    def __init__(self, net: torch.nn.Module, e_lambda: float, gamma: float, chunk: int = 1000) -> None:
        self.net, self.e_lambda, self.gamma, self.chunk = net, e_lambda, gamma, chunk
        self.fisher: torch.Tensor | None = None
        self.anchor: torch.Tensor | None = None
        self.layers = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        if sum(p.numel() for m in self.layers for p in m.parameters()) != sum(p.numel() for p in net.parameters()):
            raise ValueError("ReferenceEWC takes networks of Linear layers only")

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(self.net(x), y)
        if self.fisher is not None:
            loss = loss + self.e_lambda * quadratic_penalty(self.net, self.fisher, self.anchor)
        loss.backward()

    def end_task(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        inputs: dict[torch.nn.Module, torch.Tensor] = {}
        outputs: dict[torch.nn.Module, torch.Tensor] = {}

        def record(layer: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            inputs[layer] = args[0].detach()
            out.register_hook(lambda gradient: outputs.__setitem__(layer, gradient))

        hooks = [layer.register_forward_hook(record) for layer in self.layers]
        sums = {p: torch.zeros_like(p) for p in self.net.parameters()}
        for start in range(0, len(y), self.chunk):
            log_p = -F.cross_entropy(self.net(float_inputs(x[start : start + self.chunk])),
                                     y[start : start + self.chunk], reduction="none")
            self.net.zero_grad()
            log_p.sum().backward()  # each sample's log-likelihood depends on its own row alone
            weighted = log_p.detach().exp()[:, None]
            for layer in self.layers:
                squared = weighted * outputs[layer] ** 2
                sums[layer.weight] += squared.T @ inputs[layer] ** 2
                sums[layer.bias] += squared.sum(0)
        for hook in hooks:
            hook.remove()
        self.net.zero_grad()
        fisher = torch.cat([sums[p].flatten() for p in self.net.parameters()])
        fisher /= math.ceil(len(y) / batch_size) * batch_size
        self.fisher = fisher if self.fisher is None else self.gamma * self.fisher + fisher
        self.anchor = flat_weights(self.net)


class ReferenceSI:
    """SI as the DER paper's reference code takes it, on the flattened parameters: the loss of
    later tasks adds c * sum(Omega * (w - w*)^2); after each backward pass the gradient values
    are clipped to [-1, 1] and omega += lr * grad^2 (the path integral of plain SGD); at a task's
    end Omega += omega / ((w - w*)^2 + xi), then w* = w and omega = 0."""

    def __init__(self, net: torch.nn.Module, lr: float, c: float, xi: float) -> None:
        self.net, self.lr, self.c, self.xi = net, lr, c, xi
        self.anchor = flat_weights(self.net)
        self.omega = torch.zeros_like(self.anchor)
        self.importance: torch.Tensor | None = None

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(self.net(x), y)
        if self.importance is not None:
            loss = loss + self.c * quadratic_penalty(self.net, self.importance, self.anchor)
        loss.backward()
        torch.nn.utils.clip_grad_value_(self.net.parameters(), 1.0)
        self.omega += self.lr * torch.cat([p.grad.flatten() for p in self.net.parameters()]) ** 2

    def end_task(self) -> None:
        weights = flat_weights(self.net)
        if self.importance is None:
            self.importance = torch.zeros_like(weights)
        self.importance += self.omega / ((weights - self.anchor) ** 2 + self.xi)
        self.anchor, self.omega = weights, torch.zeros_like(weights)


class ReferenceHAL:
    """HAL as the DER paper's reference code takes it (its `models/hal.py`). A step trains on the
    minibatch and its replay; where there are anchors, the weights go back to where they were
    before that step and a second step is taken with the first one's gradient still there plus
    the gradient of hal_lambda * mean((f_new(anchors) - f_old(anchors))^2), f_new being the
    network after the first step. phi, a running mean of the minibatch's features (after the
    step), starts at 0 with each task. At a task's end a copy of the network takes one SGD step
    on `batch_size` stored samples (theta_m); each class of the task then gets an anchor: an
    input drawn uniformly in [0, 1), moved by 100 SGD steps to raise the loss at theta_m, lower
    it at the current weights and keep its features near phi (weight gamma)."""

    ANCHOR_STEPS = 100

    def __init__(self, net: torch.nn.Module, lr: float, hal_lambda: float, beta: float, gamma: float) -> None:
        self.net, self.lr, self.hal_lambda, self.beta, self.gamma = net, lr, hal_lambda, beta, gamma
        self.anchors: torch.Tensor | None = None
        self.phi: torch.Tensor | None = None

    def set_weights(self, net: torch.nn.Module, weights: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for parameter, value in zip(net.parameters(), weights):
                parameter.copy_(value)

    def step(self, x_all: torch.Tensor, y_all: torch.Tensor, x: torch.Tensor,
             optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One training step on the minibatch `x` joined by its replay; the minibatch's logits."""
        if self.phi is None:
            with torch.no_grad():
                self.phi = torch.zeros_like(self.net.features(x[:1]))
        before = [p.detach().clone() for p in self.net.parameters()]
        optimizer.zero_grad()
        out = self.net(x_all)
        F.cross_entropy(out, y_all).backward()
        optimizer.step()
        if self.anchors is not None:
            with torch.no_grad():
                moved = self.net(self.anchors)
            self.set_weights(self.net, before)
            (self.hal_lambda * ((moved - self.net(self.anchors)) ** 2).mean()).backward()
            optimizer.step()
        with torch.no_grad():
            self.phi = self.beta * self.phi + (1 - self.beta) * self.net.features(x).mean(0)
        return out[: len(x)].detach()

    def end_task(self, stored_x: torch.Tensor, stored_y: torch.Tensor, classes: list[int], batch_size: int) -> None:
        theta_t = [p.detach().clone() for p in self.net.parameters()]
        spare = copy.deepcopy(self.net)
        spare_optimizer = torch.optim.SGD(spare.parameters(), lr=self.lr)
        chosen = np.random.choice(len(stored_y), size=min(batch_size, len(stored_y)), replace=False)
        spare_optimizer.zero_grad()
        F.cross_entropy(spare(stored_x[chosen]), stored_y[chosen]).backward()
        spare_optimizer.step()
        theta_m = [p.detach().clone() for p in spare.parameters()]
        anchors = []
        for label in classes:
            anchor = torch.rand(stored_x.shape[1:], requires_grad=True)
            anchor_optimizer = torch.optim.SGD([anchor], lr=self.lr)
            target = torch.tensor([label])
            for _ in range(self.ANCHOR_STEPS):
                anchor_optimizer.zero_grad()
                self.set_weights(spare, theta_m)
                (-F.cross_entropy(spare(anchor[None]), target)).backward()
                self.set_weights(spare, theta_t)
                F.cross_entropy(spare(anchor[None]), target).backward()
                (self.gamma * ((spare.features(anchor[None]) - self.phi) ** 2).sum()).backward()
                anchor_optimizer.step()
            anchors.append(anchor.detach())
        new = torch.stack(anchors)
        self.anchors = new if self.anchors is None else torch.cat([self.anchors, new])
        self.phi = None


class ReferenceGSS:
    """GSS's memory as the DER paper's reference code keeps it (its GSS buffer), one sample at a
    time, in `stored_x` and `stored_y`. After each training step the gradient of the minibatch's
    mean loss is compared with the gradients of `compared` stored samples drawn without
    replacement: c = 1 + the largest cosine similarity (0.1 for the first minibatch, which has
    nothing to be compared with). While there is room, every sample is stored with score c.
    Once the memory is full, a minibatch with c >= 1 is turned away whole; otherwise each sample
    scores c_k = 1 + its own gradient's largest cosine with the same stored samples, draws a slot
    i with probability s_i / sum(s) and replaces it with probability s_i / (s_i + c_k)."""

    FIRST_BATCH_SCORE = 0.1

    def __init__(self, net: torch.nn.Module, stored_x: torch.Tensor, stored_y: torch.Tensor, compared: int) -> None:
        self.net, self.stored_x, self.stored_y, self.compared = net, stored_x, stored_y, compared
        self.capacity = len(stored_y)
        self.scores = np.zeros(self.capacity, dtype=np.float32)
        self.seen = self.replaced = self.batches_admitted = 0

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(len(x), parameters): each sample's cross-entropy gradient, flattened."""
        parameters = {name: p.detach() for name, p in self.net.named_parameters()}

        def loss(params: dict[str, torch.Tensor], sample: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(self.net, params, (sample.unsqueeze(0),)), label.unsqueeze(0))

        per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(parameters, x, y)
        return torch.cat([g.flatten(1) for g in per_sample.values()], 1)

    def batch_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(1, parameters): the gradient of the minibatch's mean cross-entropy."""
        gradients = torch.autograd.grad(F.cross_entropy(self.net(x), y), list(self.net.parameters()))
        return torch.cat([g.flatten() for g in gradients])[None]

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        stored = min(self.seen, self.capacity)
        reference = None
        if stored:
            chosen = np.random.choice(stored, size=min(self.compared, stored), replace=False)
            reference = self.gradients(self.stored_x[chosen], self.stored_y[chosen])
            batch_score = F.cosine_similarity(self.batch_gradient(x, y), reference, dim=1).max().item() + 1
        else:
            batch_score = self.FIRST_BATCH_SCORE
        if self.seen >= self.capacity and batch_score < 1:
            self.batches_admitted += 1
        for k in range(len(y)):
            slot, score = -1, batch_score
            if self.seen < self.capacity:
                slot = self.seen
            elif batch_score < 1:
                own = self.gradients(x[k : k + 1], y[k : k + 1])
                score = F.cosine_similarity(own, reference, dim=1).max().item() + 1
                victim = np.random.choice(self.capacity, p=self.scores / self.scores.sum())
                if np.random.rand() < self.scores[victim] / (self.scores[victim] + score):
                    slot = victim
                    self.replaced += 1
            if slot >= 0:
                self.stored_x[slot], self.stored_y[slot], self.scores[slot] = x[k], y[k], score
            self.seen += 1


def run(seed: int, lr: float, capacity: int, data_dir: str, method: str = "er", batch_size: int | None = None,
        replay: int = 10, alpha: float = 0.0, beta: float = 0.0, c: float = 1.0, xi: float = 0.9,
        setting_order: bool = False, agem_per_task: int | None = None, gss_compared: int = 10,
        gss_before_step: bool = False, perm_mnist: bool = False, hal_lambda: float = 0.1, hal_beta: float = 0.5,
        hal_gamma: float = 0.1, e_lambda: float = 0.7, ewc_gamma: float = 1.0, rot_mnist: bool = False) -> float:
    """The accuracy (%) after the last task, averaged over the tasks' test sets: class-IL on
    Seq-MNIST (batch 10 by default), domain-IL on P-MNIST (`perm_mnist`) or R-MNIST (`rot_mnist`),
    batch 128."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    common = dict(dataset="mnist", epochs=1, seed=seed, data_dir=data_dir, progress_bar=False)
    if perm_mnist or rot_mnist:
        shift = dict(domain_shift="permutation") if perm_mnist else dict(domain_shift="rotation", random_rotations=True)
        setting = DomainIncrementalSetting(nb_tasks=20, batch_size=batch_size or 128, **shift, **common)
    else:
        setting = ClassIncrementalSetting(batch_size=batch_size or 10, **common)
    batch_size = setting.batch_size
    tasks = setting.prepare_tasks()  # inputs made float per minibatch, as a plain PyTorch loop sees them
    net = MLP((1, 28, 28), 10)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    stored_x = torch.zeros(capacity, *tasks[0].x_train.shape[1:])
    stored_y = torch.zeros(capacity, dtype=torch.long)
    stored_logits = torch.zeros(capacity, 10)
    seen = 0
    si = ReferenceSI(net, lr, c, xi) if method == "si" else None
    ewc = ReferenceEWC(net, e_lambda, ewc_gamma) if method == "ewc" else None
    penalized = si or ewc  # the methods whose step is a penalized loss's, storing no samples
    gss = ReferenceGSS(net, stored_x, stored_y, gss_compared) if method == "gss" else None
    hal = ReferenceHAL(net, lr, hal_lambda, hal_beta, hal_gamma) if method == "hal" else None

    def draw() -> np.ndarray:
        available = min(seen, capacity)
        return np.random.choice(available, size=min(replay, available), replace=False)

    for task in tasks:
        if method == "agem" and task.task_id > 0:  # A-GEM: a random share of the finished task
            previous = tasks[task.task_id - 1]
            per_task = capacity // len(tasks) if agem_per_task is None else agem_per_task
            keep = np.random.choice(len(previous.y_train), size=per_task, replace=False)
            stored_x[seen : seen + len(keep)], stored_y[seen : seen + len(keep)] = (
                float_inputs(previous.x_train[keep]), previous.y_train[keep])
            seen += len(keep)
        if setting_order:  # the order the setting's own loader gives this task (seeded per task)
            loader = setting.train_loader(TensorDataset(task.y_train), shuffle=True, offset=task.task_id)
            order = torch.tensor(list(loader.sampler))
        else:
            order = torch.randperm(len(task.y_train))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x, y = float_inputs(task.x_train[index]), task.y_train[index]
            optimizer.zero_grad()
            if penalized is not None:
                penalized.backward(x, y)
                optimizer.step()
                continue
            if method == "agem":  # no reservoir: the memory is filled at task boundaries
                agem_backward(net, x, y, stored_x[:seen], stored_y[:seen], replay)
                optimizer.step()
                continue
            if hal is not None:
                chosen = draw() if seen else np.empty(0, dtype=np.int64)
                x_all, y_all = torch.cat([x, stored_x[chosen]]), torch.cat([y, stored_y[chosen]])
                logits = hal.step(x_all, y_all, x, optimizer)
            elif method in ("er", "gss"):
                if seen:
                    chosen = draw()
                    x_all, y_all = torch.cat([x, stored_x[chosen]]), torch.cat([y, stored_y[chosen]])
                else:
                    x_all, y_all = x, y
                if gss is not None and gss_before_step:  # the replayed samples are copies already
                    gss.add(x, y)
                    seen = gss.seen
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
            if hal is None:
                loss.backward()
                optimizer.step()
            if gss is not None:  # after the step, as the reference code's `observe`
                if not gss_before_step:
                    gss.add(x, y)
                    seen = gss.seen
                continue
            for j in range(len(y)):  # reservoir sampling, one sample at a time
                slot = seen if seen < capacity else np.random.randint(0, seen + 1)
                if slot < capacity:
                    stored_x[slot], stored_y[slot], stored_logits[slot] = x[j], y[j], logits[j].detach()
                seen += 1
        if si is not None:
            si.end_task()
        if ewc is not None:
            ewc.end_task(task.x_train, task.y_train, batch_size)
        if hal is not None:
            held = min(seen, capacity)
            hal.end_task(stored_x[:held], stored_y[:held], task.y_train.unique().tolist(), batch_size)
    if gss is not None:
        print(f"  gss memory: {gss.replaced:,} stored samples replaced of {gss.seen:,} seen "
              f"({gss.batches_admitted:,} minibatches admitted once full)", flush=True)
    with torch.no_grad():
        accuracies = [(net(float_inputs(t.x_test)).argmax(1) == t.y_test).float().mean().item() for t in tasks]
    return 100 * float(np.mean(accuracies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--buffer_size", type=int, default=200)
    parser.add_argument("--method", choices=["er", "der", "derpp", "agem", "si", "ewc", "gss", "hal"], default="er")
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
    parser.add_argument("--gss_compared", type=int, default=10,
                        help="GSS: stored samples each gradient is compared with (the code's gss_minibatch_size)")
    parser.add_argument("--gss_before_step", action="store_true",
                        help="GSS: score and store each minibatch before the training step on it, not after")
    parser.add_argument("--e_lambda", type=float, default=0.7, help="EWC: strength of the penalty")
    parser.add_argument("--ewc_gamma", type=float, default=1.0, help="EWC: decay of the earlier tasks' Fisher")
    parser.add_argument("--hal_lambda", type=float, default=0.1, help="HAL: weight of the anchors' output change")
    parser.add_argument("--hal_beta", type=float, default=0.5, help="HAL: decay of phi, the running mean of features")
    parser.add_argument("--hal_gamma", type=float, default=0.1, help="HAL: weight of the anchors' distance to phi")
    domain = parser.add_mutually_exclusive_group()
    domain.add_argument("--perm_mnist", action="store_true",
                        help="P-MNIST (20 permuted-MNIST tasks, domain-IL) instead of Seq-MNIST")
    domain.add_argument("--rot_mnist", action="store_true",
                        help="R-MNIST (20 rotated-MNIST tasks, domain-IL) instead of Seq-MNIST")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="default: 10 on Seq-MNIST, 128 on P-MNIST and R-MNIST")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    scenario = "domain-IL" if args.perm_mnist or args.rot_mnist else "class-IL"
    scores = []
    for seed in args.seeds:
        scores.append(run(seed, args.lr, args.buffer_size, args.data_dir, method=args.method, replay=args.replay,
                          alpha=args.alpha, beta=args.beta, c=args.c, xi=args.xi,
                          setting_order=args.setting_order, agem_per_task=args.agem_per_task,
                          gss_compared=args.gss_compared, gss_before_step=args.gss_before_step,
                          perm_mnist=args.perm_mnist, rot_mnist=args.rot_mnist, batch_size=args.batch_size,
                          hal_lambda=args.hal_lambda,
                          hal_beta=args.hal_beta, hal_gamma=args.hal_gamma, e_lambda=args.e_lambda,
                          ewc_gamma=args.ewc_gamma))
        print(f"seed {seed}: {scenario} {scores[-1]:.2f}", flush=True)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    memory = "" if args.method in ("si", "ewc") else f", buffer {args.buffer_size}"  # they store no samples
    print(f"reference {args.method} loop{memory}, lr {args.lr}: "
          f"{statistics.mean(scores):.2f} ± {std:.2f} (median {statistics.median(scores):.2f}) "
          f"over {len(scores)} seeds")


if __name__ == "__main__":
    main()
