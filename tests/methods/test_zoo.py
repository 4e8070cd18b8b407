"""Each reference method does what its paper says, checked on its mechanism (the quantity it
computes) and on digits, where its effect on forgetting is unmistakable."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sylvan.errors import ConfigurationError
from sylvan.methods import (
    AGEM,
    CLSER,
    DER,
    ERACE,
    ERAML,
    EWC,
    FDR,
    GPM,
    LODE,
    LUCIR,
    MER,
    MIR,
    PCR,
    SCR,
    SI,
    SSIL,
    WA,
    Batch,
    BiC,
    Co2L,
    DERPlusPlus,
    GDumb,
    ICaRL,
    LODEDERPlusPlus,
    LwF,
    MultiHead,
    Naive,
    RWalk,
    StableSGD,
)
from sylvan.methods.agem import project_conflicting
from sylvan.methods.parts.distillation import distillation_loss
from sylvan.settings import ClassIncrementalSetting, OnlineSetting, TaskIncrementalSetting

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=3, batch_size=16, progress_bar=False)


def configured(method, setting_cls=ClassIncrementalSetting, **options):
    """`method` configured on a setting (as `apply` does first), without training."""
    options = {**DIGITS, **options}
    if "epochs" not in setting_cls.__dataclass_fields__:
        options.pop("epochs")
    setting = setting_cls(**options)
    method.configure(setting)
    return method, setting


def plain_sgd_step(method, batch: Batch, lr: float) -> None:
    """The update the learner makes for `batch` with plain SGD: the method's loss backward, its
    `after_backward` hook, each weight minus lr times its gradient, then its `after_step` hook."""
    method.model.zero_grad()
    method.training_step(batch).backward()
    method.after_backward()
    with torch.no_grad():
        for p in method.model.parameters():
            p.sub_(lr * p.grad)
    method.after_step()


def digits_batch(labels: list[int], seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    return Batch(torch.rand(len(y), 1, 8, 8, generator=generator), y, torch.zeros_like(y))


# ----- the quantities each method computes ---------------------------------------------------------


def test_ewc_fisher_matches_a_per_sample_loop():
    method, _ = configured(EWC())
    x, y = torch.rand(7, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5, 6])
    fisher = method.fisher_information(x, y)
    expected = {k: torch.zeros_like(v) for k, v in method.model.named_parameters()}
    for xi, yi in zip(x, y):
        method.model.zero_grad()
        log_p = F.log_softmax(method.model(xi[None]), dim=1)[0, yi]
        log_p.backward()
        for k, p in method.model.named_parameters():
            expected[k] += log_p.exp().detach() * p.grad.pow(2)
    for k in expected:
        torch.testing.assert_close(fisher[k], expected[k] / len(y), rtol=1e-4, atol=1e-9)


def test_ewc_online_fisher_decays_and_anchors_at_task_end():
    method, _ = configured(EWC(gamma=0.5))
    data = (torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,)))
    assert float(method.penalty().detach()) == 0.0
    method._task_data = data
    method.on_task_end(0)
    first = {k: v.clone() for k, v in method.fisher.items()}
    assert float(method.penalty().detach()) == 0.0  # at the anchor
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(0.1)
    assert float(method.penalty().detach()) > 0.0
    method._task_data = data
    method.on_task_end(1)
    again = method.fisher_information(*data)
    for k in first:
        torch.testing.assert_close(method.fisher[k], 0.5 * first[k] + again[k])


def test_si_path_integral_is_lr_times_squared_gradient_for_plain_sgd():
    method, _ = configured(SI(lr=0.05, clip_value=0))
    optimizer = method.configure_optimizer(method.model.parameters())
    batch = digits_batch([0, 1, 0, 1])
    loss = method.training_step(batch)
    loss.backward()
    method.after_backward()
    grads = {k: p.grad.clone() for k, p in method.model.named_parameters()}
    optimizer.step()
    method.after_step()
    for k, g in grads.items():
        torch.testing.assert_close(method.path_integral[k], 0.05 * g.pow(2))


def test_si_importance_at_task_end():
    method, _ = configured(SI(xi=0.5))
    start = {k: v.clone() for k, v in method.anchor.items()}
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(0.2)
    for v in method.path_integral.values():
        v.fill_(0.3)
    method.on_task_end(0)
    for k, importance in method.importance.items():
        torch.testing.assert_close(importance, torch.full_like(start[k], 0.3 / (0.2**2 + 0.5)))
        assert float(method.path_integral[k].abs().sum()) == 0.0
    assert float(method.penalty().detach()) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=3, max_size=3), st.lists(st.floats(-10, 10), min_size=3, max_size=3))
def test_agem_projection_never_conflicts_with_the_reference(g, r):
    gradient, reference = torch.tensor(g, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
    projected = project_conflicting(gradient, reference)
    if float(torch.dot(gradient, reference)) >= 0:
        assert torch.equal(projected, gradient)
    elif float(torch.dot(reference, reference)) > 1e-6:
        assert float(torch.dot(projected, reference)) >= -1e-6 * (1 + float(reference.norm() * gradient.norm()))


def test_der_stores_the_logits_each_sample_arrived_with():
    method, _ = configured(DER(buffer_size=50), OnlineSetting)
    batch = digits_batch([0, 1, 2, 3])
    method.training_step(batch)
    stored = method.buffer.get_all()
    torch.testing.assert_close(stored["logits"], method.learner(batch.x).detach())
    assert torch.equal(stored["y"], batch.y)


def test_derpp_replays_two_independent_groups():
    method, _ = configured(DERPlusPlus(buffer_size=50, replay_size=3), OnlineSetting)
    method.training_step(digits_batch(list(range(10))))
    draws = []
    taken = method.replay.take
    method.replay.take = lambda n: draws.append(taken(n)) or draws[-1]
    inputs = []
    learner = method.learner
    method.learner = lambda x: inputs.append(x) or learner(x)
    method.training_step(digits_batch([0, 1]))
    assert method.replay_draws(2) == (3, 3) and [len(draw["y"]) for draw in draws] == [3, 3]
    assert all("logits" in draw for draw in draws)
    assert not torch.equal(draws[0]["x"], draws[1]["x"])  # independent draws of 3 from 10 stored samples
    assert torch.equal(inputs[0], torch.cat([digits_batch([0, 1]).x, draws[0]["x"], draws[1]["x"]]))


def test_er_ace_incoming_loss_leaves_absent_classes_alone():
    method, _ = configured(ERACE(buffer_size=50), OnlineSetting)
    loss = method.training_step(digits_batch([0, 1, 0, 1]))  # empty buffer: the incoming term only
    loss.backward()
    weight_grad = method.model.classifier.weight.grad
    assert float(weight_grad[2:].abs().sum()) == 0.0 and float(weight_grad[:2].abs().sum()) > 0.0


def test_lwf_distillation_is_zero_when_student_matches_teacher():
    logits = torch.randn(5, 4)
    assert float(distillation_loss(logits, logits.clone(), 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(logits, torch.randn(5, 4), 2.0)) > 0.0


def test_stable_sgd_decays_the_learning_rate_per_task_and_adds_dropout():
    method, _ = configured(StableSGD(lr=0.1, lr_decay=0.5, dropout=0.3))
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in method.model.modules())
    rates = []
    for task in range(3):
        method.on_task_start(task)
        rates.append(method.configure_optimizer(method.model.parameters()).param_groups[0]["lr"])
    assert rates == pytest.approx([0.1, 0.05, 0.025])


def test_multi_head_routes_each_sample_through_its_task_head():
    method, _ = configured(MultiHead(), TaskIncrementalSetting)
    network = method.model
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        network.weight[1].zero_()
        network.bias[1].fill_(7.0)
    out = network(x, torch.tensor([0, 1]))
    assert torch.all(out[1] == 7.0) and not torch.all(out[0] == 7.0)
    with pytest.raises(ValueError, match="task label"):
        network(x)


# ----- what each method achieves on digits ---------------------------------------------------------


@pytest.fixture(scope="module")
def digits_runs():
    # a common learning rate: digits' tasks are a few dozen steps long, too short for the small
    # rates some papers tuned for 12,000-sample MNIST tasks
    methods = {
        "naive": Naive(), "der": DER(lr=0.1, buffer_size=200), "derpp": DERPlusPlus(lr=0.1, buffer_size=200),
        "er_ace": ERACE(buffer_size=200), "er_aml": ERAML(buffer_size=200), "mir": MIR(buffer_size=200),
        "icarl": ICaRL(buffer_size=200),
        "mer": MER(buffer_size=200, replay_size=32, batch_num=2), "bic": BiC(buffer_size=200),
        "lucir": LUCIR(buffer_size=200), "ssil": SSIL(buffer_size=200),
        "wa": WA(buffer_size=200), "scr": SCR(buffer_size=200),
        "pcr": PCR(buffer_size=200), "co2l": Co2L(buffer_size=200), "lode": LODE(buffer_size=200),
        "lode_derpp": LODEDERPlusPlus(lr=0.1, buffer_size=200),
        # memories averaging over about 10 steps, not 100: a digits task is 54 steps long here
        "clser": CLSER(lr=0.1, buffer_size=200, replay_size=32, plastic_alpha=0.9, stable_alpha=0.9),
        "agem": AGEM(buffer_size=200), "fdr": FDR(lr=0.1, buffer_size=200),
        "gdumb": GDumb(buffer_size=300, retrain_epochs=10), "ewc": EWC(lr=0.1), "lwf": LwF(lr=0.1),
        "rwalk": RWalk(), "gpm": GPM(lr=0.1),
    }
    return {name: (method, ClassIncrementalSetting(**DIGITS).apply(method)) for name, method in methods.items()}


@pytest.mark.parametrize(
    "name", ["der", "derpp", "er_ace", "er_aml", "mir", "mer", "clser", "icarl", "bic", "lucir", "ssil", "scr", "pcr",
             "co2l", "lode", "lode_derpp", "gdumb", "fdr"]
)
def test_memory_methods_forget_far_less_than_naive(digits_runs, name):
    naive = digits_runs["naive"][1].final_average_accuracy
    assert digits_runs[name][1].final_average_accuracy > naive + 0.3


def test_wa_forgets_less_than_naive_and_aligns_every_later_task(digits_runs):
    """On digits' short tasks the old classes' weight vectors come out the longer (gamma > 1) while
    the new classes are still favoured, by their directions, which aligning norms cannot correct
    (the README's Seq-MNIST rows show what aligning does where the norms carry the favour)."""
    method, results = digits_runs["wa"]
    assert results.final_average_accuracy > digits_runs["naive"][1].final_average_accuracy + 0.15
    assert len(method.gammas) == 4


def test_agem_and_regularizers_keep_task_aware_accuracy(digits_runs):
    naive = digits_runs["naive"][1]
    assert digits_runs["agem"][1].final_average_accuracy > naive.final_average_accuracy
    for name in ("agem", "ewc", "lwf", "rwalk", "gpm"):
        assert digits_runs[name][1].task_aware_accuracy > 0.85


def test_icarl_keeps_equal_exemplars_and_classifies_by_their_means(digits_runs):
    method, _ = digits_runs["icarl"]
    assert method.buffer.class_counts() == {c: 20 for c in range(10)}
    assert method.class_means.shape == (10, method.model.feature_dim)
    x = torch.rand(3, 1, 8, 8, device=next(method.model.parameters()).device)
    scores = method.predict(x)
    features = F.normalize(method.model.features(x), dim=1)
    nearest = torch.cdist(features, method.class_means.to(features.device)).argmin(1)
    assert torch.equal(scores.argmax(1), nearest)


def test_gdumb_learns_from_its_balanced_memory_only(digits_runs):
    method, results = digits_runs["gdumb"]
    assert set(method.buffer.class_counts().values()) == {30}
    assert results.accuracy_matrix[0][1] == 0.0  # after task 0, task 1's classes are never predicted


# ----- nonsense hyperparameters are refused -------------------------------------------------------


@pytest.mark.parametrize(("factory", "flag"), [
    (lambda: EWC(ewc_lambda=-1), "--ewc_lambda"),
    (lambda: EWC(gamma=1.5), "--gamma"),
    (lambda: SI(xi=0), "--xi"),
    (lambda: LwF(temperature=0), "--temperature"),
    (lambda: DER(alpha=-0.1), "--alpha"),
    (lambda: DERPlusPlus(beta=-1), "--beta"),
    (lambda: AGEM(reference_batch_size=0), "--reference_batch_size"),
    (lambda: GDumb(min_lr=1.0), "--min_lr"),
    (lambda: GDumb(buffer_size=0), "--buffer_size"),
    (lambda: ICaRL(buffer_size=0), "--buffer_size"),
    (lambda: StableSGD(dropout=1.0), "--dropout"),
    (lambda: StableSGD(lr_decay=0), "--lr_decay"),
    (lambda: ERACE(replay_size=-1), "--replay_size"),
    (lambda: MIR(replay_size=-1), "--replay_size"),
])
def test_nonsense_hyperparameters_are_refused(factory, flag):
    with pytest.raises(ConfigurationError, match=flag):
        factory()


def test_momentum_given_with_adam_is_refused_and_a_methods_own_default_is_not():
    """Adam has no momentum option: a value given for it would be ignored."""
    with pytest.raises(ConfigurationError, match="--momentum 0.9 has no effect"):
        Naive(optimizer="adam", momentum=0.9)
    with pytest.raises(ConfigurationError, match="--momentum 0.5 has no effect"):
        GDumb(optimizer="adam", momentum=0.5)
    assert Naive(optimizer="adam").momentum == 0.0 and GDumb(optimizer="adam").momentum == 0.9  # the defaults
    assert Naive(optimizer="sgd", momentum=0.9).momentum == 0.9


@pytest.mark.parametrize("momentum", [1.0, 1.5])
def test_momentum_of_one_or_more_is_refused(momentum):
    with pytest.raises(ConfigurationError, match=f"--momentum must be below 1 .*got {momentum}"):
        Naive(momentum=momentum)


@pytest.mark.parametrize(("method", "message"), [
    (ICaRL(buffer_size=5), "one exemplar per class"),
    (AGEM(buffer_size=3), "leave none for some"),
])
def test_memories_too_small_for_the_setting_are_refused(method, message):
    with pytest.raises(ConfigurationError, match=message):
        configured(method)
