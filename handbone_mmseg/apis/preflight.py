"""Checks that a run can do before its work starts, so it fails in seconds, not hours.

``HandBoneDataset`` checks every image header and JSON when it is built, and (for the
validation split) decodes every image. mmengine's runner builds the datasets only after it
has printed the environment and the whole config (about 500 lines), so the tools build
them here first (``check_data``): a data error is then the first thing a run prints. A
multi-fold run builds its datasets fold by fold in processes of their own (``check_folds``).
"""
import copy
from collections.abc import Mapping, Sequence

from mmengine.config import Config
from mmseg.registry import DATASETS

from ..datasets import HandBoneDataset


def _leaves(dataset: Mapping) -> list[Mapping]:
    """The datasets inside a wrapper (mmengine's ``RepeatDataset``, ``ConcatDataset`` ...),
    or the dataset itself: only they take a pipeline."""
    if isinstance(dataset.get('dataset'), Mapping):
        return _leaves(dataset['dataset'])
    if isinstance(dataset.get('datasets'), Sequence):
        return [leaf for inner in dataset['datasets'] for leaf in _leaves(inner)]
    return [dataset]


def _build_unpiped(dataset: Mapping, decode: bool = False) -> int:
    """Build a dataset (each one inside a wrapper) as configured but without its pipeline:
    nothing is loaded. With ``decode`` every image is decoded too (``HandBoneDataset``'s
    ``check_pixels``; other datasets do not check pixels). Returns the number of images."""
    count = 0
    for leaf in _leaves(dataset):
        leaf = copy.deepcopy(leaf)
        leaf.update(pipeline=[], serialize_data=False)
        kind = DATASETS.get(leaf.get('type')) if isinstance(leaf.get('type'), str) \
            else leaf.get('type')
        if decode and isinstance(kind, type) and issubclass(kind, HandBoneDataset):
            leaf['check_pixels'] = True
        count += len(DATASETS.build(leaf))
    return count


def check_data(cfg: Config, loaders: Sequence[str],
               decode: Sequence[str] = ()) -> dict[str, int]:
    """Build the datasets of ``loaders`` once, with the dataset's own checks, before the runner.

    The checks are those the runner's build would make (every header and JSON, the
    validation split decoded); ``decode`` names loaders whose images are decoded too
    (``tools/test.py``'s test images). Each dataset inside a wrapper (``RepeatDataset``,
    ``ConcatDataset``) is built. A file decoded here is not decoded again when the runner
    builds the same split (``io.decode_errors``); headers and JSONs are read twice (1.4 ms
    per image of the 2048 phantom).

    Args:
        cfg: the run's config.
        loaders: e.g. ``('train_dataloader', 'val_dataloader')``; one the config lacks (or
            sets to None) is passed over.
        decode: those of ``loaders`` whose every image is decoded.

    Returns:
        The number of images of each dataset built.

    Raises:
        ValueError: what the dataset refuses (``AnnotationError`` names the file).
        FileNotFoundError: a missing image or annotation folder.
    """
    counts = {}
    for loader in loaders:
        settings = cfg.get(loader)
        if not settings:
            continue
        counts[loader] = _build_unpiped(settings['dataset'], decode=loader in decode)
    return counts


def train_loaders(cfg: Config) -> list[str]:
    """The dataloaders ``Runner.train`` builds: training, and validation where configured."""
    return ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') is not None else [])


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
    for leaf in _leaves(dataset):
        if folds and 'fold' in leaf:
            leaf['fold'] = folds[0]
    return _build_unpiped(dataset)
