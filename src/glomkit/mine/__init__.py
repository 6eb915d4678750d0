"""glomkit.mine: harvest unlabelled glomerulus panels from published compound figures.

separate (X-Y cut panel separation) -> modality (is it bright-field light microscopy?) ->
score (glomerulus probability from a classifier) -> dedupe (perceptual hash) -> curate (the run,
its manifest and contact sheet). ``figures`` builds synthetic compound figures with known boxes.
"""

from glomkit.mine.curate import MineConfig, MineResult, mine_figures
from glomkit.mine.dedupe import phash
from glomkit.mine.modality import is_light_microscopy, modality_features
from glomkit.mine.separate import Box, SeparationConfig, box_iou, separate_panels

__all__ = [
    "Box",
    "MineConfig",
    "MineResult",
    "SeparationConfig",
    "box_iou",
    "is_light_microscopy",
    "mine_figures",
    "modality_features",
    "phash",
    "separate_panels",
]
