"""quests_core: QUESTS descriptors, information entropy and dH with Numba.

Quick start::

    import quests_core as qc
    x = qc.descriptors(atoms_list)            # (n_atoms, 63) for k = 32
    H = qc.entropy(x, h=0.015)                # nats
    dH = qc.delta_entropy(y, x, h=0.015)      # per test environment, nats
"""

from .approximate import NeighborIndex, approx_delta_entropy
from .descriptors import DEFAULT_CUTOFF, DEFAULT_K, descriptor_width, descriptors
from .entropy import (
    DEFAULT_BANDWIDTH,
    delta_entropy,
    diversity,
    entropy,
    entropy_and_delta,
    novelty,
    overlap,
)
from .errors import Cancelled, QuestsError
from .learning import AsymptoteFit, LearningCurve, fit_asymptote, learning_curve
from .sampling import EntropyEstimate, frame_entropy, sampled_entropy
from .settings import bandwidth_from_volume
from .threads import get_num_threads, set_num_threads, thread_limit

__all__ = [
    "DEFAULT_BANDWIDTH",
    "DEFAULT_CUTOFF",
    "DEFAULT_K",
    "AsymptoteFit",
    "Cancelled",
    "EntropyEstimate",
    "LearningCurve",
    "NeighborIndex",
    "QuestsError",
    "approx_delta_entropy",
    "bandwidth_from_volume",
    "delta_entropy",
    "descriptor_width",
    "descriptors",
    "diversity",
    "entropy",
    "entropy_and_delta",
    "fit_asymptote",
    "frame_entropy",
    "get_num_threads",
    "learning_curve",
    "novelty",
    "overlap",
    "sampled_entropy",
    "set_num_threads",
    "thread_limit",
]
__version__ = "0.1.0"
