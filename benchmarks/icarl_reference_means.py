"""Why sylvan's `icarl` beats the published Seq-MNIST figure: the exemplar memory and the
nearest-mean-of-exemplars classifier of the DER paper's reference code (its iCaRL as published
since 2022, after a bug fix its authors made in 2021: the code that produced the paper's table is
older) differ from the iCaRL paper's (and from sylvan's).

The iCaRL paper L2-normalizes features and averages each class's exemplar features. The
reference code uses unnormalized features and, computing each class mean over batches of
`batch_size` exemplars, folds the batches in with a running pairwise average
(`mean += batch_mean; mean /= 2`), which weights the last batch 1/2, the one before 1/4, ...:
with 50 exemplars per class (buffer 500) in batches of 10, the "mean" is dominated by the last
exemplars, the least representative ones in herding order. Its memory selects each new class's
exemplars by forward herding on those unnormalized features and cuts old classes to their first
m exemplars; sylvan's `herding` buffer also herds forward when a whole task arrives, but on
normalized features, and re-herds an old class on its stored features when its quota shrinks.
This script runs, on the same seeds, sylvan's `icarl`, the same method with the reference
code's classifier, and with the reference code's classifier and memory.

    python benchmarks/icarl_reference_means.py --data_dir ~/.cache/sylvan/data [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import ClassVar

import torch

from sylvan.buffers import ReservoirBuffer
from sylvan.buffers.channel import LocalReplay
from sylvan.methods import ICaRL
from sylvan.methods.core.supervised import evaluating
from sylvan.settings import ClassIncrementalSetting
from sylvan.settings.online import DEFAULT_DATA_DIR


@dataclass
class ICaRLReferenceMeans(ICaRL):
    """iCaRL with the reference code's classifier: unnormalized features, running pairwise
    average of per-batch means (batches of `batch_size`, in exemplar order)."""

    name: ClassVar[str] = ""  # not registered: a benchmark variant only

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with evaluating(self.model) as model:
            return model.features(x.to(next(model.parameters()).device)).flatten(1).cpu()

    def exemplar_means(self) -> torch.Tensor:
        stored = self.replay.stored()
        labels = stored["y"].cpu()
        batch = self.run.batch_size
        means = None
        for label in labels.unique().tolist():
            exemplars = stored["x"][labels == label]
            running = None
            for start in range(0, len(exemplars), batch):
                batch_mean = self.features(exemplars[start : start + batch]).mean(0)
                running = batch_mean if running is None else (running + batch_mean) / 2
            if means is None:
                means = torch.full((self.run.num_classes, len(running)), float("nan"))
            means[label] = running
        return means

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        if self.class_means is None:
            return super().scores(x, task_labels)
        features = self.model.features(x).flatten(1)
        means = self.class_means.to(features.device)
        scores = (-torch.cdist(features, torch.nan_to_num(means)).pow(2)).masked_fill(
            torch.isnan(means).any(1), float("-inf"))
        return self.mask_to_tasks(scores, task_labels)


@dataclass
class ICaRLReferenceMemory(ICaRLReferenceMeans):
    """The reference code's classifier and memory: old classes keep their first m exemplars;
    each new class gets m exemplars by forward herding on unnormalized features."""

    name: ClassVar[str] = ""

    def update_exemplars(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None = None) -> None:
        per_class = self.buffer_size // int(self.seen_classes.active.sum())
        kept: list[dict[str, torch.Tensor]] = []
        if len(self.replay):
            stored = self.replay.stored()
            for label in stored["y"].unique().tolist():
                index = torch.nonzero(stored["y"] == label).flatten()[:per_class]
                kept.append({k: v[index] for k, v in stored.items()})
        features = self.features(x)
        for label in y.unique().tolist():
            index = torch.nonzero(y == label).flatten()
            candidates = features[index].clone()
            mean, running, chosen = candidates.mean(0), torch.zeros(candidates.shape[1]), []
            for i in range(min(per_class, len(index))):
                cost = (mean - (candidates + running) / (i + 1)).norm(dim=1)
                best = int(cost.argmin())
                chosen.append(best)
                running += features[index[best]]
                candidates[best] += 1e6
            picked = index[torch.tensor(chosen)]
            fields = {"x": x[picked], "y": y[picked], "features": features[picked]}
            if t is not None:
                fields["t"] = t[picked]
            kept.append(fields)
        self.buffer = ReservoirBuffer(self.buffer_size, seed=self.run.seed)
        self.replay = LocalReplay(self.buffer)  # the memory the method reads, through its channel
        self.replay.insert({k: torch.cat([part[k] for part in kept]) for k in kept[0]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--buffer_sizes", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--only", nargs="+", help="variants to run (default: all)")
    args = parser.parse_args()
    for buffer_size in args.buffer_sizes:
        variants = [("sylvan's icarl", ICaRL), ("reference classifier", ICaRLReferenceMeans),
                    ("reference classifier and memory", ICaRLReferenceMemory)]
        for label, cls in variants:
            if args.only and cls.__name__ not in args.only:
                continue
            scores = []
            for seed in args.seeds:
                setting = ClassIncrementalSetting(dataset="mnist", nb_tasks=5, batch_size=10, epochs=1, seed=seed,
                                                  data_dir=args.data_dir, progress_bar=False)
                results = setting.apply(cls(lr=0.1, buffer_size=buffer_size, backbone="mlp"))
                scores.append(100 * results.final_average_accuracy)
                print(f"buffer {buffer_size}, {label}, seed {seed}: class-IL {scores[-1]:.2f}", flush=True)
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            print(f"buffer {buffer_size}, {label}: {statistics.mean(scores):.2f} ± {std:.2f}", flush=True)


if __name__ == "__main__":
    main()
