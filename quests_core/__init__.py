"""quests_core: QUESTS descriptors, information entropy and dH with Numba."""

from .descriptors import DEFAULT_CUTOFF, DEFAULT_K, descriptor_width, descriptors
from .errors import QuestsError
from .threads import get_num_threads, set_num_threads

__all__ = [
    "DEFAULT_CUTOFF",
    "DEFAULT_K",
    "QuestsError",
    "descriptor_width",
    "descriptors",
    "get_num_threads",
    "set_num_threads",
]
__version__ = "0.1.0"
