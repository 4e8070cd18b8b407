"""sylvan: continual learning as a tree of settings, with rehearsal that scales out."""

from sylvan.methods import METHODS, Method, SupervisedMethod
from sylvan.metrics import Results
from sylvan.settings import SETTINGS, Setting

__version__ = "0.1.0"

__all__ = ["METHODS", "SETTINGS", "Method", "Results", "Setting", "SupervisedMethod", "__version__"]
