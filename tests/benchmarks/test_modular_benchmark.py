"""What the modular benchmark plans: every run of each part once, the independent reference of
each CTrL stream shared by its parts, and its ensembles' members from seeds of their own."""

from __future__ import annotations

import json
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import modular  # noqa: E402


def test_each_part_plans_its_runs_once_with_the_options_its_claims_need():
    moe = modular.jobs_of("moe", [0, 1, 2], quick=False)
    assert len(moe) == len({folder for folder, _, _ in moe}) == 3 * 2 * (1 + 2 * 3 + 16)
    members = [json.loads(options) for folder, _, options in moe if "/member" in folder]
    assert len({(m["seed"], m["nb_tasks"]) for m in members}) == len(members)  # every member its own seed
    assert not {m["seed"] for m in members} & {0, 1, 2}
    hard = [json.loads(options) for _, method, options in moe if method == "hard_moe"]
    assert {(m["experts"], m["expert_modules"]) for m in hard} == {(k, e) for k in (4, 8, 16) for e in (0, 1)}
    assert all(m["backbone"] == "mlp_16" for m in hard)
    selective = {folder for folder, _, _ in modular.jobs_of("selective", [0], quick=False)}
    mntdp = {folder for folder, _, _ in modular.jobs_of("mntdp", [0], quick=False)}
    assert {folder for folder in selective if "independent" in folder} <= mntdp  # one reference per stream
    assert len(mntdp) == 5 * (1 + 8)
    references = [json.loads(options) for folder, _, options in modular.jobs_of("mntdp", [0], quick=False)
                  if "independent" in folder]
    assert all(options["forward_transfer"] for options in references)
    long = modular.jobs_of("long", [0], quick=False)
    assert {method for _, method, _ in long} == set(modular.LONG_METHODS)
    assert len(modular.jobs_of("mntdp", [0], quick=True)) < len(mntdp)
