"""Checks that a run can do before its work starts, so it fails in seconds, not hours.

``HandBoneDataset`` checks every image header and JSON when it is built, and (for the
validation split) decodes every image; mmengine builds both splits before the first
iteration. What is left for the tools: a multi-fold run, which builds its datasets fold by
fold in processes of their own.
"""
import copy
from collections.abc import Sequence

from mmengine.config import Config
from mmseg.registry import DATASETS


def check_folds(cfg: Config, folds: Sequence[int]) -> int:
    """Build the training split of the first of ``folds`` once, without its pipeline.

    It is what ``tools/train.py`` will build for that fold, so every header and JSON it
    would refuse (and an ``n_folds`` larger than the number of patients, which leaves a
    fold empty) is refused before fold 0 trains, not when a later fold starts.

    Returns:
        The number of training images of that fold.

    Raises:
        ValueError: what the dataset refuses (``AnnotationError`` names the file).
        FileNotFoundError: a missing image or annotation folder.
    """
    dataset = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset.update(pipeline=[], serialize_data=False)
    if folds and 'fold' in dataset:
        dataset['fold'] = folds[0]
    return len(DATASETS.build(dataset))
