"""Ensembling, threshold and post-processing tuning over probability dumps, one image at a
time, in the quantised domain and inside the bone boxes.

A dump stores each class's levels inside the box of its non-zero levels. Per image and
class, only the union of the models' boxes is touched: a pixel outside every box is
background for every vote and every candidate threshold. Inside, the soft vote is an
integer weighted sum of levels compared with the threshold turned into levels once
(``functional.quantized``); a model's thresholded probabilities and the hard vote are
table lookups. The results are byte-identical to voting on float probabilities
(``functional.voting``), which is still used for dumps stored below full size.

Per image: ``crops() -> integer vote in the union box -> BoxMasks -> postprocess() ->
box_dice_counts()`` (and ``BoxMasks.rles()`` in ``tools/ensemble.py``). With ``workers``
the images are spread over a process pool; results come back in image order, so the output
does not depend on it.
"""
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..classes import CLASSES
from ..functional.box_masks import Box, BoxMasks, box_dice_counts, union_box, window
from ..functional.postprocess import PostprocessSearch, Rule, check_rules
from ..functional.quantized import (
    LEVELS,
    MAX_VOTE_TABLE,
    above_table,
    accumulator_dtype,
    float_vote,
    integer_weights,
    level_cut,
    vote_table,
)
from ..functional.thresholds import DEFAULT_GRID, ThresholdSearch, check_thresholds
from ..functional.voting import check_vote_threshold, check_weights
from ..io.prob_dump import LevelCrops, ProbDump, ProbDumpError, check_compatible
from ..utils.progress import track

METHODS = ('soft', 'hard', 'best')
# below this many images a pool costs more to start (about 0.3 s a worker) than it saves
MIN_IMAGES_PER_WORKER = 4


def default_workers(images: int) -> int:
    """Processes for ``images`` images: up to 4 cores, 0 (this process) for a few images."""
    # the cores this process may run on (taskset, cgroups' cpusets), not the machine's
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else \
        (os.cpu_count() or 1)
    cores = min(4, usable)
    return cores if cores > 1 and images >= MIN_IMAGES_PER_WORKER * cores else 0


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


def gt_boxes(info: dict) -> BoxMasks:
    """The ground truth of one ``load_labels`` entry, class by class in its box."""
    return BoxMasks.from_polygons(info['polygons'], tuple(info['ori_shape']), len(CLASSES))


@dataclass
class ClassVote:
    """How one class is voted: by which models, with which weights and cut."""

    voters: list[int]  # indices of the dumps that cover the class
    weights: list[float]  # the voters' normalised float weights
    ints: list[int] | None  # the same ratio in integers, None: vote in float
    cut: tuple[int, int] = (0, -1)  # level_cut of the soft vote's threshold
    table: np.ndarray | None = None  # vote_table of a hard vote by few enough models


@dataclass
class Plan:
    """Everything decided before the first image: a worker of the pool gets a copy."""

    dumps: list[ProbDump]
    method: str
    thresholds: np.ndarray  # (C,) float64
    votes: list[ClassVote]
    scale: int  # the levels voted on: uint16's where any dump is uint16 (``_levels``)
    above: np.ndarray  # (C, scale + 1) above_table: a model's thresholded levels
    full_size: bool  # every dump stored at the original size: the quantised path
    vote_threshold: float = 0.5
    choice: list[int] | None = None
    rules: list[Rule | None] = field(default_factory=list)
    labels: dict[str, dict] | None = None
    grid: np.ndarray | None = None  # candidates of a threshold search
    # per total integer weight, the _bin_table of a threshold search
    bin_tables: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    encode: bool = False  # RLE-encode the masks where they are made


def _plan(dumps: Sequence[ProbDump], weights: Sequence[float] | None,
          labels: dict[str, dict] | None, method: str = 'soft',
          thresholds: Sequence[float] | None = None, vote_threshold: float = 0.5,
          choice: Sequence[int] | None = None,
          postprocess: Sequence[Rule | None] | None = None) -> Plan:
    """Check every input before the first image is read, and decide the votes."""
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    dumps = list(dumps)
    check_compatible(dumps, CLASSES)
    weights = [1.0] * len(dumps) if weights is None else list(weights)
    if len(weights) != len(dumps):
        raise ValueError(f'{len(weights)} weights for {len(dumps)} probability dumps')
    check_weights(weights)
    if labels is not None:
        check_labels(dumps[0], labels)
    thr = check_thresholds([0.5] * len(CLASSES) if thresholds is None else thresholds)
    rules = check_rules([None] * len(CLASSES) if postprocess is None else postprocess,
                        len(CLASSES))
    if method == 'best':
        if choice is None or len(choice) != len(CLASSES) or \
                any(not 0 <= c < len(dumps) for c in choice):
            raise ValueError(f'method best needs one model index in 0..{len(dumps) - 1} per '
                             f'class, got {choice}')
        choice = [int(c) for c in choice]
    elif method == 'hard':
        check_vote_threshold(vote_threshold)
    scale = max(LEVELS[d.dtype] for d in dumps)
    votes = []
    for c, name in enumerate(CLASSES):
        voters = [m for m, d in enumerate(dumps) if name in d.covers]
        if not voters:
            raise ProbDumpError(f'no dump covers class {name}: '
                                f'{", ".join(str(d.folder) for d in dumps)}')
        if method == 'best' and choice[c] not in voters:
            raise ValueError(f'method best takes {name} from {dumps[choice[c]].folder}, '
                             'which does not cover it')
        own = [weights[m] for m in voters]
        ints = integer_weights(own)
        vote = ClassVote(voters, check_weights(own), ints)
        if ints is not None:
            vote.cut = level_cut(float(thr[c]), scale, sum(ints))
        if method == 'hard' and len(voters) <= MAX_VOTE_TABLE:
            vote.table = vote_table(vote.weights, vote_threshold)
        votes.append(vote)
    return Plan(dumps, method, thr, votes, scale, above_table(thr, scale),
                all(d.full_size for d in dumps), vote_threshold,
                choice if method == 'best' else None, rules, labels)


def _place(crop: np.ndarray, box: Box, into: Box) -> tuple[slice, slice]:
    """The slices of ``into``-sized arrays that ``crop`` (at ``box``, inside ``into``) fills."""
    return (slice(box[0] - into[0], box[1] - into[0]), slice(box[2] - into[2], box[3] - into[2]))


def _gather(crop: np.ndarray, box: Box, into: Box, ys: np.ndarray, xs: np.ndarray
            ) -> np.ndarray:
    """Levels of ``crop`` (at ``box``) at positions ``ys, xs`` of ``into``; 0 outside."""
    out = np.zeros(ys.shape, crop.dtype)
    y, x = ys + into[0] - box[0], xs + into[2] - box[2]
    inside = (y >= 0) & (y < box[1] - box[0]) & (x >= 0) & (x < box[3] - box[2])
    out[inside] = crop[y[inside], x[inside]]
    return out


def _soft_sum(levels: list[LevelCrops], vote: ClassVote, c: int, scale: int
              ) -> tuple[Box, np.ndarray | None, np.ndarray | None]:
    """The union box of class ``c`` and, inside it, the integer weighted sum of levels
    (or, for weights with no small integer ratio, the float vote)."""
    boxes = [levels[m].boxes[c] for m in vote.voters]
    box = union_box(boxes)
    if box[0] >= box[1]:
        return box, None, None
    if vote.ints is None:
        views = [window(levels[m].crops[c], box, levels[m].boxes[c]) for m in vote.voters]
        return box, None, float_vote(views, vote.weights, scale)
    acc = np.zeros((box[1] - box[0], box[3] - box[2]), accumulator_dtype(scale, sum(vote.ints)))
    for m, weight in zip(vote.voters, vote.ints):
        crop, at = levels[m].crops[c], levels[m].boxes[c]
        if not crop.size:
            continue
        view = acc[_place(crop, at, box)]
        if weight == 1:
            view += crop
        else:
            view += crop.astype(acc.dtype) * acc.dtype.type(weight)
    return box, acc, None


def _ambiguous(acc: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the sums in ``[lo, hi]``, whose decision needs the float vote."""
    if lo > hi:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    return np.nonzero((acc >= max(lo, 0)) & (acc <= hi))


def _float_at(levels: list[LevelCrops], vote: ClassVote, c: int, box: Box, ys: np.ndarray,
              xs: np.ndarray, scale: int) -> np.ndarray:
    """The float vote at positions ``ys, xs`` of ``box``."""
    values = [_gather(levels[m].crops[c], levels[m].boxes[c], box, ys, xs)
              for m in vote.voters]
    return float_vote(values, vote.weights, scale)


def _soft_mask(levels: list[LevelCrops], vote: ClassVote, c: int, threshold: float,
               scale: int) -> tuple[Box, np.ndarray]:
    box, acc, probs = _soft_sum(levels, vote, c, scale)
    if acc is None and probs is None:
        return box, np.zeros((0, 0), bool)
    t32 = np.float32(threshold)
    if probs is not None:
        return box, probs > t32
    lo, hi = vote.cut
    mask = acc > hi
    ys, xs = _ambiguous(acc, lo, hi)
    if ys.size:
        mask[ys, xs] = _float_at(levels, vote, c, box, ys, xs, scale) > t32
    return box, mask


def _hard_mask(levels: list[LevelCrops], vote: ClassVote, c: int, above: np.ndarray,
               vote_threshold: float) -> tuple[Box, np.ndarray]:
    box = union_box([levels[m].boxes[c] for m in vote.voters])
    if box[0] >= box[1]:
        return box, np.zeros((0, 0), bool)
    yes = [(levels[m].boxes[c], above[levels[m].crops[c]]) for m in vote.voters]
    if vote.table is None:  # too many models for a table of every outcome
        share = float_vote([window(v, box, at) for at, v in yes], vote.weights, 1)
        return box, share >= np.float32(vote_threshold * (1 - 1e-6))
    code = np.zeros((box[1] - box[0], box[3] - box[2]), np.uint16)
    for i, (at, v) in enumerate(yes):
        if v.size:
            code[_place(v, at, box)] |= v.astype(np.uint16) << i
    return box, vote.table[code]


def _masks(plan: Plan, levels: list[LevelCrops], shape: tuple[int, int]) -> BoxMasks:
    """The ensemble's masks of one image, before post-processing."""
    boxes, crops = [], []
    for c, vote in enumerate(plan.votes):
        if plan.method == 'soft':
            box, mask = _soft_mask(levels, vote, c, float(plan.thresholds[c]), plan.scale)
        elif plan.method == 'hard':
            box, mask = _hard_mask(levels, vote, c, plan.above[c], plan.vote_threshold)
        else:
            chosen = levels[plan.choice[c]]
            box, mask = chosen.boxes[c], plan.above[c][chosen.crops[c]]
        boxes.append(box)
        crops.append(mask)
    return BoxMasks(shape, boxes, crops)


def _model_masks(plan: Plan, levels: LevelCrops, shape: tuple[int, int]) -> BoxMasks:
    """One model's thresholded probabilities (``prob > threshold``)."""
    return BoxMasks(shape, list(levels.boxes),
                    [plan.above[c][crop] for c, crop in enumerate(levels.crops)])


def _float_masks(plan: Plan, probs: list) -> BoxMasks:
    """The ensemble of dumps stored below full size (``probs``: each dump's ``load()``,
    upsampled), voted in float (``functional.voting``), as a dense frame."""
    import torch

    from ..functional.voting import hard_vote, pick_per_class, soft_vote
    thr = torch.as_tensor(plan.thresholds, dtype=torch.float32).view(-1, 1, 1)
    if plan.method == 'best':
        masks = pick_per_class(probs, plan.choice) > thr
    else:
        masks = torch.zeros_like(probs[0], dtype=torch.bool)
        for c, vote in enumerate(plan.votes):
            views = [probs[m][c:c + 1] for m in vote.voters]
            if plan.method == 'soft':
                masks[c:c + 1] = soft_vote(views, vote.weights) > thr[c]
            else:
                masks[c:c + 1] = hard_vote([v > thr[c] for v in views], vote.weights,
                                           plan.vote_threshold)
    return BoxMasks.from_dense(masks.numpy())


def _levels(plan: Plan, name: str) -> list[LevelCrops]:
    """Every dump's levels of image ``name``; uint8 ones as uint16 when mixed with uint16
    dumps: ``257 * L / 65535`` is ``L / 255`` exactly, so every decision stays the same."""
    levels = [d.crops(name) for d in plan.dumps]
    if plan.scale == LEVELS['uint16']:
        for crops in levels:
            if crops.dtype == np.uint8:
                crops.crops = [c.astype(np.uint16) * np.uint16(257) for c in crops.crops]
    return levels


def ensemble_image(plan: Plan, name: str
                   ) -> tuple[str, BoxMasks, np.ndarray | None]:
    """One image: ``(name, masks after post-processing, counts)``; see ``iter_ensemble``."""
    shape = plan.dumps[0].ori_shapes[name]
    if plan.full_size:
        levels, probs = _levels(plan, name), None
        masks = _masks(plan, levels, shape)
    else:
        levels, probs = None, [d.load(name) for d in plan.dumps]
        masks = _float_masks(plan, probs)
    if any(plan.rules):
        masks = masks.postprocess(plan.rules)
    if plan.encode:
        masks.rles()
    if plan.labels is None:
        return name, masks, None
    gt = gt_boxes(plan.labels[name])
    if levels is None:
        import torch
        thr = torch.as_tensor(plan.thresholds, dtype=torch.float32).view(-1, 1, 1)
        models = [BoxMasks.from_dense((p > thr).numpy()) for p in probs]
    else:
        models = [_model_masks(plan, lv, shape) for lv in levels]
    counts = [box_dice_counts(m, gt) for m in models] + [box_dice_counts(masks, gt)]
    return name, masks, np.stack(counts)


def threshold_histograms(plan: Plan, name: str) -> tuple[str, list[tuple]]:
    """Per class the soft vote's pixel counts per candidate bin, of all pixels and of the
    ground-truth ones, and the ground-truth count, for ``ThresholdSearch.add_class``."""
    search = ThresholdSearch(plan.grid, len(CLASSES))
    gt = gt_boxes(plan.labels[name])
    totals = gt.sums()
    out = []
    if not plan.full_size:
        from ..functional.voting import soft_vote
        probs = [d.load(name) for d in plan.dumps]
        truth = gt.dense()
        for c, vote in enumerate(plan.votes):
            bins = search.bins(soft_vote([probs[m][c] for m in vote.voters],
                                         vote.weights).numpy())
            out.append((*search.histograms(bins, bins[truth[c]]), totals[c]))
        return name, out
    levels = _levels(plan, name)
    scale = plan.scale
    for c, vote in enumerate(plan.votes):
        box, acc, probs = _soft_sum(levels, vote, c, scale)
        if acc is None and probs is None:
            empty = np.empty(0, np.intp)
            out.append((*search.histograms(empty, empty), totals[c]))
            continue
        if probs is not None:
            bins = search.bins(probs)
        else:
            table, unsure = plan.bin_tables[sum(vote.ints)]
            bins = table[acc]
            ys, xs = np.nonzero(unsure[acc])
            if ys.size:
                bins[ys, xs] = search.bins(_float_at(levels, vote, c, box, ys, xs, scale))
        truth = window(gt.crops[c], box, gt.boxes[c])  # the boxes may overlap in part
        out.append((*search.histograms(bins, bins[truth]), totals[c]))
    return name, out


def _bin_table(grid: np.ndarray, scale: int, total_weight: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per weighted level sum its bin (candidates it is above) and whether some candidate's
    decision is ambiguous there (``level_cut``)."""
    sums = np.arange(scale * total_weight + 1)
    bins = np.zeros(sums.size, np.intp)
    unsure = np.zeros(sums.size, bool)
    for t in grid.astype(np.float64):
        lo, hi = level_cut(float(t), scale, total_weight)
        bins += sums > hi
        if lo <= hi:
            unsure[max(lo, 0):hi + 1] = True
    return bins, unsure


_WORKER_PLAN: Plan | None = None


def _init_worker(plan: Plan) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = plan


def _run_ensemble(name: str) -> tuple[str, BoxMasks, np.ndarray | None]:
    return ensemble_image(_WORKER_PLAN, name)


def _run_histograms(name: str) -> tuple[str, list[tuple]]:
    return threshold_histograms(_WORKER_PLAN, name)


def _map(function, plan: Plan, names: list[str], workers: int | None,
         description: str, progress: bool) -> Iterator:
    """``function(name)`` for each name in order, here or in a pool of ``workers``."""
    workers = default_workers(len(names)) if workers is None else workers
    bar = dict(total=len(names), description=description, enabled=None if progress else False)
    if workers <= 1:
        _init_worker(plan)
        yield from track((function(n) for n in names), **bar)
        return
    # spawn: a forked child of a process holding torch's thread pool can hang
    context = multiprocessing.get_context('spawn')
    with context.Pool(workers, initializer=_init_worker, initargs=(plan, )) as pool:
        yield from track(pool.imap(function, names), **bar)


def iter_ensemble(dumps: Sequence[ProbDump], weights: Sequence[float] | None = None,
                  thresholds: Sequence[float] | None = None, method: str = 'soft',
                  vote_threshold: float = 0.5, choice: Sequence[int] | None = None,
                  labels: dict[str, dict] | None = None,
                  postprocess: Sequence[Rule | None] | None = None, progress: bool = False,
                  workers: int | None = 0, encode: bool = False
                  ) -> Iterator[tuple[str, BoxMasks, np.ndarray | None]]:
    """Yield ``(image name, masks, counts)`` per image, in the dumps' image order.

    Args:
        dumps: the models' dumps of the same images.
        weights: one positive weight per dump (default equal). A dump whose index does not
            cover a class (a second-stage model) has no vote on it.
        thresholds: one per class in (0, 1) (default 0.5); applied to the soft vote, to each
            model's probabilities before a hard vote, and for every per-model Dice.
        method: ``'soft'`` (weighted mean of probabilities), ``'hard'`` (weighted vote of
            masks, see ``voting.hard_vote``) or ``'best'`` (class c from model
            ``choice[c]``).
        vote_threshold: the share of the weight a hard vote needs.
        choice: per class the index of the model to use, for ``'best'``.
        labels: ``load_labels`` entries; with them ``counts`` is the (M + 1, C, 3) Dice
            counts of each model and, last, of the ensemble, else None.
        postprocess: per class a rule or None (``load_postprocess``), applied to the
            ensemble's masks after the vote, so also to its counts; each model's counts are
            of its thresholded probabilities alone.
        progress: draw a progress bar on a terminal (``utils.progress.track``).
        workers: processes (0: this one; None: ``default_workers``).
        encode: compute each image's ``masks.rles()`` where its masks are made (in the
            worker, with ``workers``).

    Yields:
        ``masks`` is a ``BoxMasks`` (``.dense()``: (C, H, W) bool; ``.rles()``).

    Raises:
        ProbDumpError, ValueError: mismatched dumps, weights, thresholds or choice, checked
            before the first image is read.
    """
    plan = _plan(dumps, weights, labels, method, thresholds, vote_threshold, choice,
                 postprocess)
    plan.encode = encode
    yield from _map(_run_ensemble, plan, plan.dumps[0].names, workers, 'ensemble', progress)


def search_thresholds(dumps: Sequence[ProbDump], labels: dict[str, dict],
                      weights: Sequence[float] | None = None,
                      grid: Sequence[float] = DEFAULT_GRID,
                      progress: bool = False, workers: int | None = 0) -> ThresholdSearch:
    """Per-class Dice at every grid threshold of the dumps' soft vote against ``labels``
    (``progress``: a bar on a terminal; ``workers`` as in ``iter_ensemble``)."""
    plan = _plan(dumps, weights, labels)
    search = ThresholdSearch(grid, len(CLASSES))
    plan.grid = search.grid
    plan.bin_tables = {sum(v.ints): _bin_table(search.grid, plan.scale, sum(v.ints))
                       for v in plan.votes if v.ints is not None}
    for _, classes in _map(_run_histograms, plan, plan.dumps[0].names, workers, 'thresholds',
                           progress):
        for c, (pred_hist, gt_hist, total) in enumerate(classes):
            search.add_class(c, pred_hist, gt_hist, total)
        search.next_image()
    return search


def search_postprocess(dumps: Sequence[ProbDump], labels: dict[str, dict],
                       thresholds: Sequence[float], weights: Sequence[float] | None = None,
                       progress: bool = False, workers: int | None = 0) -> PostprocessSearch:
    """Component statistics of the dumps' soft vote at ``thresholds`` against ``labels``:
    the masks ``tools/ensemble.py`` writes, before post-processing (``progress``: a bar)."""
    check_labels(dumps[0], labels)
    search = PostprocessSearch(len(CLASSES))
    for name, masks, _ in iter_ensemble(dumps, weights, thresholds, progress=progress,
                                        workers=workers):
        search.add(masks, gt_boxes(labels[name]))
    return search
