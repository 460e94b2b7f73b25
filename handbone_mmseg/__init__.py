"""handbone-mmseg: multi-label hand-bone segmentation for MMSegmentation 1.x.

Importing the package (``custom_imports = dict(imports=['handbone_mmseg'])``) registers the
dataset, transforms, segmentors, losses and metric into mmseg's registries.
"""
from .apis import *  # noqa: F401,F403
from .classes import CLASSES, IGNORE_VALUE, NUM_CLASSES, PALETTE
from .compat import allow_mmengine_checkpoints
from .datasets import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .visualization import *  # noqa: F401,F403

allow_mmengine_checkpoints()

__version__ = '0.1.0'
__all__ = ['CLASSES', 'IGNORE_VALUE', 'NUM_CLASSES', 'PALETTE']
