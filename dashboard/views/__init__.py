"""One module per view of the dashboard; each view is a thin Param class over AppState."""

from .atoms import AtomsView
from .data import DataView
from .learning import LearningView
from .nucleation import NucleationView
from .overlap import OverlapView
from .structure import StructureView
from .trajectory import TrajectoryView

__all__ = [
    "AtomsView",
    "DataView",
    "LearningView",
    "NucleationView",
    "OverlapView",
    "StructureView",
    "TrajectoryView",
]
