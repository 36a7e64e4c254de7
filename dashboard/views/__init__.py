"""One module per view of the dashboard; each view is a thin Param class over AppState."""

from .active_learning import ActiveLearningView
from .atoms import AtomsView
from .compression import CompressionView
from .data import DataView
from .learning import LearningView
from .nucleation import NucleationView
from .overlap import OverlapView
from .stores import StoreView
from .structure import StructureView
from .trajectory import TrajectoryView
from .uncertainty import UncertaintyView

__all__ = [
    "ActiveLearningView",
    "AtomsView",
    "CompressionView",
    "DataView",
    "LearningView",
    "NucleationView",
    "OverlapView",
    "StoreView",
    "StructureView",
    "TrajectoryView",
    "UncertaintyView",
]
