"""Seq-CIFAR-10, the protocol of Buzzega et al., "Dark Experience for General Continual Learning"
(NeurIPS 2020): CIFAR-10 as 5 class-incremental tasks of 2 classes, ResNet-18, plain SGD, 50
epochs per task, batch 32, random crops (padding 4) and horizontal flips, inputs normalized by the
dataset's channel statistics (the `cifar10` dataset's defaults), each method with the paper's best
hyperparameters (its code's best arguments). Prints class-IL and task-IL accuracy (mean ± std
over seeds) and the wall time of each run, next to the figures of Table 2 of the paper.

    python benchmarks/seq_cifar10.py --data_dir ~/.cache/sylvan/data [--seeds 0 1 2] [--only er-200 der-500]

A run trains 250 epochs of a ResNet-18 over 10,000 images each: it is meant for a GPU, where
the setting trains by default (`--accelerator auto`). CIFAR-10 is downloaded into DATA_DIR when
the network allows (otherwise put `cifar-10-batches-py/` there). `joint` trains `naive` on
`multi_task` (all tasks at once) and evaluates it both without task labels (class-IL) and with
them (task-IL); `pnn` runs on `task_incremental` (task-IL only).
"""

from __future__ import annotations

from der_tables import Protocol, Run, main, with_batch_gated_gss

from sylvan.buffers import GSSOptions
from sylvan.methods import (
    AGEM,
    CLSER,
    DER,
    EWC,
    FDR,
    GEM,
    HAL,
    PNN,
    SI,
    DERPlusPlus,
    ICaRL,
    LwF,
    Naive,
    Rehearsal,
)

RUNS: dict[str, Run] = {
    "naive": Run(lambda: Naive(lr=0.1), 19.62, 61.02),
    "ewc": Run(lambda: EWC(lr=0.03, ewc_lambda=10, gamma=1.0), 19.49, 68.29),
    "si": Run(lambda: SI(lr=0.03, c=0.5, xi=1.0), 19.48, 68.05),
    "lwf": Run(lambda: LwF(lr=0.01, alpha=3.0, temperature=2.0, weight_decay=5e-4), 19.61, 63.29),
    "er-200": Run(lambda: Rehearsal(lr=0.1, buffer_size=200, replay_size=32), 44.79, 91.19),
    "er-500": Run(lambda: Rehearsal(lr=0.1, buffer_size=500, replay_size=32), 57.74, 93.61),
    "gem-200": Run(lambda: GEM(lr=0.03, buffer_size=200, margin=0.5), 25.54, 90.44),
    "gem-500": Run(lambda: GEM(lr=0.03, buffer_size=500, margin=0.5), 26.20, 92.16),
    "agem-200": Run(lambda: AGEM(lr=0.03, buffer_size=200, reference_batch_size=32), 20.04, 83.88),
    "agem-500": Run(lambda: AGEM(lr=0.03, buffer_size=500, reference_batch_size=32), 22.67, 89.48),
    # the paper's code adds 1e-5 * (sum of squared weights) to iCaRL's loss: SGD's weight decay 2e-5
    # the paper's code ignores FDR's alpha option (alpha = 1 here)
    "fdr-200": Run(lambda: FDR(lr=0.03, buffer_size=200, replay_size=32), 30.91, 91.01),
    "fdr-500": Run(lambda: FDR(lr=0.03, buffer_size=500, replay_size=32), 28.71, 93.29),
    # GSS: experience replay with the gss buffer policy, each new sample's gradient compared with 32 stored samples'
    "gss-200": Run(lambda: Rehearsal(lr=0.03, buffer_size=200, replay_size=32, buffer_policy="gss",
                                     buffer_options=GSSOptions(gss_compared=32)),
                   39.07, 88.80),
    "gss-500": Run(lambda: Rehearsal(lr=0.03, buffer_size=500, replay_size=32, buffer_policy="gss",
                                     buffer_options=GSSOptions(gss_compared=32)),
                   49.73, 91.02),
    "hal-200": Run(lambda: HAL(lr=0.03, buffer_size=200, replay_size=32, hal_lambda=0.2, beta=0.5, gamma=0.1),
                   32.36, 82.51),
    "hal-500": Run(lambda: HAL(lr=0.03, buffer_size=500, replay_size=32, hal_lambda=0.1, beta=0.3, gamma=0.1),
                   41.79, 84.54),
    "icarl-200": Run(lambda: ICaRL(lr=0.1, buffer_size=200, weight_decay=2e-5), 49.02, 88.99),
    "icarl-500": Run(lambda: ICaRL(lr=0.1, buffer_size=500, weight_decay=2e-5), 47.55, 88.22),
    "der-200": Run(lambda: DER(lr=0.03, buffer_size=200, replay_size=32, alpha=0.3), 61.93, 91.40),
    "der-500": Run(lambda: DER(lr=0.03, buffer_size=500, replay_size=32, alpha=0.3), 70.51, 93.40),
    "derpp-200": Run(lambda: DERPlusPlus(lr=0.03, buffer_size=200, replay_size=32, alpha=0.1, beta=0.5), 64.88, 91.92),
    "derpp-500": Run(lambda: DERPlusPlus(lr=0.03, buffer_size=500, replay_size=32, alpha=0.2, beta=0.5), 72.70, 93.88),
    # CLS-ER: its own paper's best arguments and figures (the stable memory's), on the same protocol
    "clser-200": Run(lambda: CLSER(lr=0.1, buffer_size=200, replay_size=32, reg_weight=0.15, plastic_update_freq=0.3,
                                   plastic_alpha=0.999, stable_update_freq=0.1, stable_alpha=0.999), 66.19, 93.90),
    "clser-500": Run(lambda: CLSER(lr=0.1, buffer_size=500, replay_size=32, reg_weight=0.15, plastic_update_freq=0.9,
                                   plastic_alpha=0.999, stable_update_freq=0.1, stable_alpha=0.999), 75.22, 94.94),
    "joint": Run(lambda: Naive(lr=0.1), 92.20, 98.31, setting="multi_task"),
    # task-incremental only: a ResNet-18 column per task (the laterals' form differs from the paper's code's)
    "pnn": Run(lambda: PNN(lr=0.03), None, 95.13, setting="task_incremental"),
}
RUNS = with_batch_gated_gss(RUNS)

SEQ_CIFAR10 = Protocol(
    title="Seq-CIFAR-10", dataset="cifar10", nb_tasks=5, epochs=50, batch_size=32, runs=RUNS,
    default_runs=tuple(name for name in RUNS if not name.startswith("gss-gated-")),  # (those with --only)
)


if __name__ == "__main__":
    main(SEQ_CIFAR10, __doc__)
