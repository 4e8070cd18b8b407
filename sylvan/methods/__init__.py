"""Methods. Importing this package registers every built-in method."""

from __future__ import annotations

from sylvan.methods.agem import AGEM
from sylvan.methods.base import METHODS, Method, applicable_methods, check_applicable, get_method
from sylvan.methods.der import DER
from sylvan.methods.derpp import DERPlusPlus
from sylvan.methods.er_ace import ERACE
from sylvan.methods.ewc import EWC
from sylvan.methods.from_scratch import FromScratch
from sylvan.methods.gdumb import GDumb
from sylvan.methods.icarl import ICaRL
from sylvan.methods.learner import Batch, Learner, SupervisedMethod
from sylvan.methods.lwf import LwF
from sylvan.methods.multi_head import MultiHead
from sylvan.methods.naive import Naive
from sylvan.methods.random_method import RandomMethod
from sylvan.methods.rehearsal import Rehearsal
from sylvan.methods.replay import ReplayMethod
from sylvan.methods.si import SI
from sylvan.methods.stable_sgd import StableSGD

__all__ = [
    "AGEM",
    "DER",
    "ERACE",
    "EWC",
    "METHODS",
    "SI",
    "Batch",
    "DERPlusPlus",
    "FromScratch",
    "GDumb",
    "ICaRL",
    "Learner",
    "LwF",
    "Method",
    "MultiHead",
    "Naive",
    "RandomMethod",
    "Rehearsal",
    "ReplayMethod",
    "StableSGD",
    "SupervisedMethod",
    "applicable_methods",
    "check_applicable",
    "get_method",
]
