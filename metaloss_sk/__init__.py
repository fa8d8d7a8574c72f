"""metaloss_sk: learn symbolic loss functions for skorch networks (EvoMAL)."""

from .local_search import LocalSearch
from .loss import SymbolicLoss
from .primitives import EVOMAL_FUNCTION_SET, PRIMITIVES, Primitive, register_primitive
from .program import Program, parse
from .search import LossSearchCV
from .selection import simplest_within_one_se

__version__ = "0.1.0"

__all__ = ["LossSearchCV", "LocalSearch", "SymbolicLoss", "Program", "parse", "PRIMITIVES", "EVOMAL_FUNCTION_SET",
           "Primitive", "register_primitive", "simplest_within_one_se", "__version__"]
