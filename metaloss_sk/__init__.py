"""metaloss_sk: learn symbolic loss functions for skorch networks (EvoMAL)."""

from .evolution import Evolution
from .final_selection import simplest_within_one_se
from .local_search import LocalSearch
from .loss import SymbolicLoss
from .primitives import EVOMAL_FUNCTION_SET, PRIMITIVES, Primitive, register_primitive
from .program import Program, parse
from .schedule import Schedule
from .search import LossSearchCV

__version__ = "0.1.0"

__all__ = ["LossSearchCV", "Evolution", "Schedule", "LocalSearch", "SymbolicLoss", "Program", "parse", "PRIMITIVES",
           "EVOMAL_FUNCTION_SET",
           "Primitive", "register_primitive", "simplest_within_one_se", "__version__"]
