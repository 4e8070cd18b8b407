"""Methods. Importing this package registers every built-in method."""

from __future__ import annotations

from sylvan.methods.base import METHODS, Method, applicable_methods, check_applicable, get_method
from sylvan.methods.from_scratch import FromScratch
from sylvan.methods.learner import Batch, Learner, SupervisedMethod
from sylvan.methods.naive import Naive
from sylvan.methods.random_method import RandomMethod
from sylvan.methods.rehearsal import Rehearsal

__all__ = [
    "METHODS",
    "Batch",
    "FromScratch",
    "Learner",
    "Method",
    "Naive",
    "RandomMethod",
    "Rehearsal",
    "SupervisedMethod",
    "applicable_methods",
    "check_applicable",
    "get_method",
]
