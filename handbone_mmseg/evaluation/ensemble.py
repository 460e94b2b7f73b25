"""Ensembling, threshold and post-processing tuning over probability dumps, one image at a
time.

Memory holds one image of one model plus an accumulator, however many images and models.
Per image: ``load() -> soft_vote() / hard_vote() / pick_per_class() -> > thresholds ->
apply_postprocess() -> dice_counts()`` (and RLE in ``tools/ensemble.py``).
"""
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ..classes import CLASSES
from ..functional.metrics import dice_counts
from ..functional.postprocess import PostprocessSearch, Rule, apply_postprocess, check_rules
from ..functional.thresholds import DEFAULT_GRID, ThresholdSearch, check_thresholds
from ..functional.voting import (
    check_vote_threshold,
    check_weights,
    hard_vote,
    pick_per_class,
    soft_vote,
)
from ..io.prob_dump import ProbDump, ProbDumpError, check_compatible
from ..utils.progress import track
from .scoring import gt_masks

METHODS = ('soft', 'hard', 'best')


def check_labels(dump: ProbDump, labels: dict[str, dict]) -> None:
    """Every image of ``dump`` must have ground truth of the same size."""
    missing = [n for n in dump.names if n not in labels]
    if missing:
        raise ProbDumpError(f'{dump.folder}: {len(missing)} images have no labels '
                            f'(e.g. {missing[:3]})')
    for name in dump.names:
        if tuple(labels[name]['ori_shape']) != dump.ori_shapes[name]:
            raise ProbDumpError(f'{dump.folder}: image {name} is {dump.ori_shapes[name]}, '
                                f'its label {tuple(labels[name]["ori_shape"])}')


def _prepare(dumps: Sequence[ProbDump], weights: Sequence[float] | None,
             labels: dict[str, dict] | None) -> list[float]:
    check_compatible(dumps, CLASSES)
    weights = [1.0] * len(dumps) if weights is None else list(weights)
    if len(weights) != len(dumps):
        raise ValueError(f'{len(weights)} weights for {len(dumps)} probability dumps')
    check_weights(weights)  # here, before the first image is read
    if labels is not None:
        check_labels(dumps[0], labels)
    return weights


def iter_ensemble(dumps: Sequence[ProbDump], weights: Sequence[float] | None = None,
                  thresholds: Sequence[float] | None = None, method: str = 'soft',
                  vote_threshold: float = 0.5, choice: Sequence[int] | None = None,
                  labels: dict[str, dict] | None = None,
                  postprocess: Sequence[Rule | None] | None = None, progress: bool = False
                  ) -> Iterator[tuple[str, Tensor, np.ndarray | None]]:
    """Yield ``(image name, (C, H, W) bool masks, counts)`` per image.

    Args:
        dumps: the models' dumps of the same images.
        weights: one positive weight per dump (default equal).
        thresholds: one per class in (0, 1) (default 0.5); applied to the soft vote, to each
            model's probabilities before a hard vote, and for every per-model Dice.
        method: ``'soft'`` (weighted mean of probabilities), ``'hard'`` (weighted vote of
            masks, see ``hard_vote``) or ``'best'`` (class c from model ``choice[c]``).
        vote_threshold: the share of the weight a hard vote needs.
        choice: per class the index of the model to use, for ``'best'``.
        labels: ``load_labels`` entries; with them ``counts`` is the (M + 1, C, 3) Dice
            counts of each model and, last, of the ensemble, else None.
        postprocess: per class a rule or None (``load_postprocess``), applied to the
            ensemble's masks after the vote, so also to its counts; each model's counts are
            of its thresholded probabilities alone.
        progress: draw a progress bar on a terminal (``utils.progress.track``).

    Raises:
        ProbDumpError, ValueError: mismatched dumps, weights, thresholds or choice, checked
            before the first image is read.
    """
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    weights = _prepare(dumps, weights, labels)
    thr = torch.as_tensor(check_thresholds(
        [0.5] * len(CLASSES) if thresholds is None else thresholds), dtype=torch.float32)
    thr = thr.view(-1, 1, 1)
    rules = check_rules([None] * len(CLASSES) if postprocess is None else postprocess,
                        len(CLASSES))
    if method == 'best':
        if choice is None or len(choice) != len(CLASSES) or \
                any(not 0 <= c < len(dumps) for c in choice):
            raise ValueError(f'method best needs one model index in 0..{len(dumps) - 1} per '
                             f'class, got {choice}')
    elif method == 'hard':
        check_vote_threshold(vote_threshold)
    for name in track(dumps[0].names, description='ensemble', enabled=None if progress else False):
        gt = None if labels is None else gt_masks(labels[name])
        counts: list[np.ndarray] = []

        def views() -> Iterator[Tensor]:
            for dump in dumps:
                prob = dump.load(name)
                if gt is not None:
                    counts.append(dice_counts(prob > thr, gt).numpy())
                yield prob

        if method == 'soft':
            masks = soft_vote(views(), weights) > thr
        elif method == 'hard':
            masks = hard_vote((prob > thr for prob in views()), weights, vote_threshold)
        else:
            masks = pick_per_class(views(), choice) > thr
        if any(rules):
            masks = torch.from_numpy(apply_postprocess(masks.numpy(), rules))
        if gt is None:
            yield name, masks, None
        else:
            counts.append(dice_counts(masks, gt).numpy())
            yield name, masks, np.stack(counts)


def search_thresholds(dumps: Sequence[ProbDump], labels: dict[str, dict],
                      weights: Sequence[float] | None = None,
                      grid: Sequence[float] = DEFAULT_GRID,
                      progress: bool = False) -> ThresholdSearch:
    """Per-class Dice at every grid threshold of the dumps' soft vote against ``labels``
    (``progress``: a bar on a terminal)."""
    weights = _prepare(dumps, weights, labels)
    search = ThresholdSearch(grid, len(CLASSES))
    for name in track(dumps[0].names, description='thresholds',
                      enabled=None if progress else False):
        prob = soft_vote((dump.load(name) for dump in dumps), weights)
        search.add(prob, gt_masks(labels[name]))
    return search


def search_postprocess(dumps: Sequence[ProbDump], labels: dict[str, dict],
                       thresholds: Sequence[float], weights: Sequence[float] | None = None,
                       progress: bool = False) -> PostprocessSearch:
    """Component statistics of the dumps' soft vote at ``thresholds`` against ``labels``:
    the masks ``tools/ensemble.py`` writes, before post-processing (``progress``: a bar)."""
    check_labels(dumps[0], labels)
    search = PostprocessSearch(len(CLASSES))
    for name, masks, _ in iter_ensemble(dumps, weights, thresholds, progress=progress):
        search.add(masks.numpy(), gt_masks(labels[name]).numpy())
    return search
