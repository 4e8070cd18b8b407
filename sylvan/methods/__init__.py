"""Methods. Importing this package registers every built-in method.

`Learner`, the network of supervised methods the engine trains, is imported on first use:
listing, parsing and validating methods does not load Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sylvan.methods.agem import AGEM
from sylvan.methods.anil import ANIL
from sylvan.methods.aser import ASER
from sylvan.methods.bic import BiC
from sylvan.methods.clear import CLEAR
from sylvan.methods.clser import CLSER
from sylvan.methods.co2l import Co2L
from sylvan.methods.continual_maml import ContinualMAML
from sylvan.methods.cope import CoPE
from sylvan.methods.core.base import METHODS, Method, get_method, joined_state
from sylvan.methods.core.regularization import WeightRegularization
from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch, SupervisedMethod
from sylvan.methods.der import DER
from sylvan.methods.derpp import DERPlusPlus
from sylvan.methods.dqn import DQN
from sylvan.methods.eeil import EEIL
from sylvan.methods.er_ace import ERACE
from sylvan.methods.er_aml import ERAML
from sylvan.methods.ewc import EWC
from sylvan.methods.fdr import FDR
from sylvan.methods.from_scratch import FromScratch
from sylvan.methods.gdumb import GDumb
from sylvan.methods.gem import GEM
from sylvan.methods.gpm import GPM
from sylvan.methods.hal import HAL
from sylvan.methods.hard_moe import HardMoE
from sylvan.methods.hat import HAT
from sylvan.methods.icarl import ICaRL
from sylvan.methods.il2m import IL2M
from sylvan.methods.l2 import L2
from sylvan.methods.lode import LODE, LODEDERPlusPlus
from sylvan.methods.lucir import LUCIR
from sylvan.methods.lwf import LwF
from sylvan.methods.maml import MAML
from sylvan.methods.mas import MAS
from sylvan.methods.mer import MER
from sylvan.methods.mir import MIR
from sylvan.methods.mntdp import MNTDP
from sylvan.methods.multi_head import MultiHead
from sylvan.methods.naive import Naive
from sylvan.methods.ogd import OGD
from sylvan.methods.packnet import PackNet
from sylvan.methods.pcr import PCR
from sylvan.methods.pnn import PNN
from sylvan.methods.ppo import PPO
from sylvan.methods.random_method import RandomMethod
from sylvan.methods.rehearsal import Rehearsal
from sylvan.methods.rwalk import RWalk
from sylvan.methods.sac import SAC
from sylvan.methods.scr import SCR
from sylvan.methods.selective_finetune import SelectiveFinetune
from sylvan.methods.si import SI
from sylvan.methods.ssil import SSIL
from sylvan.methods.stable_sgd import StableSGD
from sylvan.methods.wa import WA
from sylvan.run.pairing import applicable_methods, check_applicable

__all__ = [
    "AGEM",
    "ANIL",
    "ASER",
    "CLEAR",
    "CLSER",
    "Co2L",
    "ContinualMAML",
    "CoPE",
    "DER",
    "DQN",
    "EEIL",
    "ERACE",
    "ERAML",
    "EWC",
    "FDR",
    "GEM",
    "GPM",
    "HAL",
    "HardMoE",
    "HAT",
    "IL2M",
    "LODE",
    "LODEDERPlusPlus",
    "LUCIR",
    "MAS",
    "MER",
    "MNTDP",
    "METHODS",
    "MIR",
    "OGD",
    "PCR",
    "PNN",
    "SAC",
    "SCR",
    "SelectiveFinetune",
    "SI",
    "SSIL",
    "WA",
    "Batch",
    "BiC",
    "DERPlusPlus",
    "FromScratch",
    "GDumb",
    "ICaRL",
    "Learner",
    "L2",
    "LwF",
    "MAML",
    "Method",
    "MultiHead",
    "Naive",
    "PPO",
    "PackNet",
    "RandomMethod",
    "RWalk",
    "Rehearsal",
    "ReplayMethod",
    "StableSGD",
    "SupervisedMethod",
    "WeightRegularization",
    "applicable_methods",
    "check_applicable",
    "get_method",
    "joined_state",
]


if TYPE_CHECKING:
    from sylvan.methods.core.learner import Learner


def __getattr__(name: str) -> Any:
    if name == "Learner":
        from sylvan.methods.core.learner import Learner

        return Learner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
