"""Anatomy rules: per image, annotations that contradict the hand's layout or the data set's
own habits, without any model.

Each rule compares an image with anatomy (``functional.anatomy``: the order of the bones
along a ray, across the hand, along the carpal columns) and with the rest of the data set,
measured in the hand's own frame (``hand_frame``: turned, mirrored and scaled with the
hand, so a bent wrist or a small hand is no outlier). The data set's habits are robust
statistics (medians, median absolute deviations), so the few wrong labels an audit looks
for do not set the norm they are measured against.

=========  ===============================================================================
missing    a class labeled in most images has no polygon
pieces     a class drawn as one polygon almost everywhere has two or more (an accessory
           ossicle labeled as the bone, a stray click)
order      two bones in the wrong order along a ray, across the hand or along a carpal
           column, where the data set keeps that order (a swap of neighbours)
swap       two bones each sitting where the other one usually is, in the hand frame
position   a bone's centroid far from where that bone usually lies
outside    a bone's centroid outside the rest of the hand, further than usual, and away
           from its usual place
area       a bone far smaller or larger than usual for the size of the hand
overlap    two bones overlapping that almost never overlap elsewhere (at most 0.5 each:
           the overlap says that one of the two is wrong, not which)
=========  ===============================================================================
"""
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..classes import CLASS_INDEX, CLASSES
from ..functional.anatomy import ACROSS, ORDER_CHAINS, hand_frame
from .findings import Finding
from .fingerprint import ImageFacts

MIN_IMAGES = 8          # fewer labeled images: no statistics, the anatomy alone decides
CONSISTENT = 0.9        # an order or a habit that this share of images keeps is a rule
OVERLAP_SHARE = 0.05    # shared pixels over the smaller bone's: above it two bones overlap
RARE_OVERLAP = 0.1      # pairs that overlap in fewer images than this share are unusual
Z_START, Z_FULL = 3.0, 9.0  # robust z at which a score starts, and where it reaches 1
SWAP_GAIN = 9.0         # squared-spread units a swap must explain to be reported
MIN_SPREAD = 0.01       # frame units (about 1 mm on a 10 cm hand): floors of the spreads
MIN_LOG_AREA_SIGMA = 0.05
MIN_AREA_RATIO = 1.25   # an area rule needs at least this ratio either way


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's all-NaN warnings: an absent class has no statistics, on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        yield


def _robust(values: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column median and 1.4826 x median absolute deviation (at least ``floor``),
    ignoring NaN; NaN columns stay NaN."""
    with _quiet():
        median = np.nanmedian(values, 0)
        sigma = 1.4826 * np.nanmedian(np.abs(values - median), 0)
    return median, np.maximum(sigma, floor)


def _ramp(z: float) -> float:
    """0 below ``Z_START``, 1 from ``Z_FULL``, linear between."""
    return float(np.clip((z - Z_START) / (Z_FULL - Z_START), 0.0, 1.0))


@dataclass
class LabelStats:
    """The data set's habits, from every labeled image.

    Attributes:
        names: the labeled images, in the order of the arrays.
        coords: (N, C, 2) centroids in the hand frame (``along, across``), NaN where absent
            or where the image has no frame.
        scales: (N,) the frame unit in pixels (NaN without a frame).
        presence: (C,) share of images where the class is labeled.
        single: (C,) share of those where it is one polygon.
        template, spread: (C, 2) median place and (C,) median distance from it.
        log_area, log_area_sigma: (C,) median and robust spread of log(area / scale^2).
        outside, outside_sigma: (C,) median and robust spread of the hull distance / scale.
        overlapping, both: (C, C) images where two classes overlap, and images holding both.
        order: per ``(a, b, axis)``: images with b after a, images with both, median gap.

    An image is judged against the others: its own overlap or order is taken out of the
    counts (``overlap_freq``, ``order_habit``), so that in a small data set one wrong label
    does not make its own mistake look usual.
    """

    names: list[str]
    coords: np.ndarray
    scales: np.ndarray
    presence: np.ndarray
    single: np.ndarray
    template: np.ndarray
    spread: np.ndarray
    log_area: np.ndarray
    log_area_sigma: np.ndarray
    outside: np.ndarray
    outside_sigma: np.ndarray
    overlapping: np.ndarray
    both: np.ndarray
    order: dict[tuple[str, str, int], tuple[int, int, float]] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.names)

    @property
    def enough(self) -> bool:
        """Whether there are images enough for statistics (``MIN_IMAGES``)."""
        return self.n_images >= MIN_IMAGES

    def overlap_freq(self, i: int, j: int) -> float:
        """Share of the other images holding classes i and j where they overlap, for an
        image where they do."""
        return max(0.0, self.overlapping[i, j] - 1) / max(1.0, self.both[i, j] - 1)

    def order_habit(self, a: str, b: str, axis: int) -> tuple[float, float]:
        """``(share of the other images with b after a, median gap)``, for an image with b
        before a; ``(1.0, nan)`` without any."""
        after, total, gap = self.order.get((a, b, axis), (0, 0, float('nan')))
        return (after / (total - 1), gap) if total > 1 else (1.0, gap)


def frame_coords(facts: ImageFacts) -> tuple[np.ndarray, float]:
    """(C, 2) hand-frame centroids of one image and its frame unit (NaN without a frame)."""
    frame = hand_frame(facts.centroids)
    if frame is None:
        return np.full((len(CLASSES), 2), np.nan), float('nan')
    return frame.coords(facts.centroids), frame.scale


def overlap_shares(facts: ImageFacts) -> dict[tuple[int, int], float]:
    """Per overlapping pair, the shared pixels over the smaller bone's pixels."""
    return {(i, j): pixels / max(1, min(facts.area[i], facts.area[j]))
            for (i, j), pixels in facts.overlaps.items()}


def label_stats(facts: Sequence[ImageFacts]) -> LabelStats:
    """The habits of the labeled images among ``facts``."""
    labeled = [f for f in facts if f.labeled]
    n, c = len(labeled), len(CLASSES)
    coords = np.full((n, c, 2), np.nan)
    scales = np.full(n, np.nan)
    present = np.zeros((n, c), bool)
    polygons = np.zeros((n, c))
    log_area = np.full((n, c), np.nan)
    outside = np.full((n, c), np.nan)
    both = np.zeros((c, c))
    overlapping = np.zeros((c, c))
    for k, f in enumerate(labeled):
        coords[k], scales[k] = frame_coords(f)
        present[k], polygons[k] = f.present, f.polygons
        with np.errstate(divide='ignore'):
            log_area[k] = np.where(f.present, np.log(f.polygon_area / scales[k] ** 2), np.nan)
        outside[k] = f.outside / scales[k]
        both += np.outer(f.present, f.present)
        for (i, j), share in overlap_shares(f).items():
            if share > OVERLAP_SHARE:
                overlapping[i, j] += 1
                overlapping[j, i] += 1
    presence = present.mean(0) if n else np.zeros(c)
    single = np.where(present.sum(0) > 0,
                      (polygons == 1).sum(0) / np.maximum(present.sum(0), 1), 1.0)
    with _quiet():
        template = np.nanmedian(coords, 0) if n else np.full((c, 2), np.nan)
        spread = np.nanmedian(np.hypot(*(coords - template).transpose(2, 0, 1)), 0) \
            if n else np.full(c, np.nan)
    spread = np.maximum(spread, MIN_SPREAD)
    area_median, area_sigma = _robust(log_area, MIN_LOG_AREA_SIGMA)
    outside_median, outside_sigma = _robust(outside, MIN_SPREAD)
    stats = LabelStats([f.name for f in labeled], coords, scales, presence, single, template,
                       spread, area_median, area_sigma, outside_median, outside_sigma,
                       overlapping, both)
    for chain in ORDER_CHAINS:
        for i, a in enumerate(chain.classes):
            for b in chain.classes[i + 1:]:
                d = _gap(coords, a, b, chain.axis)
                d = d[~np.isnan(d)]
                if len(d):
                    stats.order[(a, b, chain.axis)] = (int((d > 0).sum()), len(d),
                                                       float(np.median(d)))
    return stats


def _gap(coords: np.ndarray, a: str, b: str, axis: int) -> np.ndarray:
    """How far b lies after a on ``axis``, per image (or for one image's (C, 2))."""
    return coords[..., CLASS_INDEX[b], axis] - coords[..., CLASS_INDEX[a], axis]


def _where(axis: int, wrong: bool) -> str:
    if axis == ACROSS:
        return 'on the thumb side of' if wrong else 'on the little-finger side of'
    return 'proximal to' if wrong else 'distal to'


def _order_findings(name: str, coords: np.ndarray, present: np.ndarray,
                    stats: LabelStats) -> list[Finding]:
    """Neighbours in the wrong order along a chain: evidence for both, as a likely swap."""
    found = []
    for chain in ORDER_CHAINS:
        members = [m for m in chain.classes if present[CLASS_INDEX[m]]]
        for a, b in zip(members, members[1:]):
            d = float(_gap(coords, a, b, chain.axis))
            if not d < 0:
                continue
            consistency, gap = stats.order_habit(a, b, chain.axis)
            if stats.enough and (consistency < CONSISTENT or not gap > 0):
                continue  # the data set itself does not keep this order
            strength = -d / gap if stats.enough else 1.0
            score = consistency * min(1.0, strength)
            if score < 0.1:
                continue
            habit = (f'{_where(chain.axis, False)} it in {consistency:.0%} of the other '
                     'images' if stats.enough else 'anatomy says otherwise')
            text = (f'{b} lies {_where(chain.axis, True)} {a} in the {chain.name} ({habit}): '
                    f'likely swap of {a} and {b}')
            found += [Finding(name, a, 'order', score, text, b),
                      Finding(name, b, 'order', score, text, a)]
    return found


def _swap_findings(name: str, coords: np.ndarray, stats: LabelStats) -> list[Finding]:
    """Pairs of bones each sitting where the other usually is, in the hand frame."""
    t, r = stats.template, stats.spread
    z2 = ((coords - t) ** 2).sum(-1) / r ** 2                        # (C,)
    cross = ((coords[:, None] - t[None]) ** 2).sum(-1) / r[None] ** 2  # (C, C): a at b's place
    gain = z2[:, None] + z2[None, :] - cross - cross.T
    fits = np.maximum(cross, cross.T) < Z_START ** 2
    found = []
    with np.errstate(invalid='ignore'):
        pairs = np.argwhere(np.triu(fits & (gain > SWAP_GAIN), 1))
    for i, j in pairs:
        a, b = CLASSES[i], CLASSES[j]
        score = float(1 - np.exp(-(gain[i, j] - SWAP_GAIN) / SWAP_GAIN))
        if score < 0.05:
            continue
        text = (f'{a} sits where {b} usually is and {b} where {a} is (distance from their '
                f'usual places {np.sqrt(z2[i]):.1f} and {np.sqrt(z2[j]):.1f} spreads, '
                f'{np.sqrt(cross[i, j]):.1f} and {np.sqrt(cross[j, i]):.1f} swapped): '
                f'likely swap of {a} and {b}')
        found += [Finding(name, a, 'swap', score, text, b),
                  Finding(name, b, 'swap', score, text, a)]
    return found


def image_findings(facts: ImageFacts, stats: LabelStats, k: int) -> list[Finding]:
    """Every rule's findings for labeled image ``facts``, the ``k``-th of ``stats``."""
    name, present, n = facts.name, facts.present, stats.n_images
    found = []
    for c in np.flatnonzero(~present):
        usual = stats.presence[c] if stats.enough else 0.9
        if usual >= 0.5:
            habit = f'labeled in {usual:.0%} of {n} images' if stats.enough else 'every hand has it'
            found.append(Finding(name, CLASSES[c], 'missing', float(usual),
                                 f'no {CLASSES[c]} polygon ({habit})'))
    for c, areas in facts.piece_areas.items():
        usual = stats.single[c] if stats.enough else 0.9
        if usual >= 0.5:
            sizes = ', '.join(f'{a:.0f}' for a in areas)
            found.append(Finding(name, CLASSES[c], 'pieces', float(usual),
                                 f'{len(areas)} separate polygons of {sizes} px '
                                 f'(one polygon in {usual:.0%} of {n} images)'
                                 if stats.enough else
                                 f'{len(areas)} separate polygons of {sizes} px'))
    coords, scale = stats.coords[k], stats.scales[k]
    found += _order_findings(name, coords, present, stats)
    if not stats.enough or np.isnan(scale):
        return found
    found += _swap_findings(name, coords, stats)
    distance = np.hypot(*(coords - stats.template).T) / stats.spread
    with np.errstate(divide='ignore', invalid='ignore'):
        log_area = np.log(facts.polygon_area / scale ** 2)
    for c in np.flatnonzero(present):
        cls = CLASSES[c]
        score = _ramp(distance[c])
        if score > 0:
            found.append(Finding(name, cls, 'position', score,
                                 f'centroid {distance[c]:.1f} times the usual spread away from '
                                 f'where {cls} usually lies in the hand'))
        z = (facts.outside[c] / scale - stats.outside[c]) / stats.outside_sigma[c]
        # only for a bone away from its place too: a bone at the hand's edge is pushed
        # "outside" when a neighbour further out is missing, without being wrong itself
        if facts.outside[c] > 0 and _ramp(z) > 0 and distance[c] > Z_START:
            found.append(Finding(name, cls, 'outside', _ramp(z),
                                 f'centroid {facts.outside[c]:.0f} px outside the other bones '
                                 f'(robust z {z:.1f} against {cls} elsewhere)'))
        shift = log_area[c] - stats.log_area[c]
        z = abs(shift) / stats.log_area_sigma[c]
        if abs(shift) > np.log(MIN_AREA_RATIO) and _ramp(z) > 0:
            found.append(Finding(name, cls, 'area', _ramp(z),
                                 f'area {np.exp(shift):.2f} times the usual {cls} for the '
                                 f'size of the hand (robust z {z:.1f})'))
    for (i, j), share in overlap_shares(facts).items():
        if share <= OVERLAP_SHARE:
            continue
        freq = stats.overlap_freq(i, j)
        if freq < RARE_OVERLAP:
            # an overlap says that one of the two is wrong, not which: half to each
            score = 0.5 * float((1 - freq / RARE_OVERLAP) * min(1.0, share / (5 * OVERLAP_SHARE)))
            if score <= 0:
                continue
            a, b = CLASSES[i], CLASSES[j]
            text = (f'{a} and {b} share {facts.overlaps[(i, j)]} px ({share:.0%} of the '
                    f'smaller); they overlap in {freq:.0%} of the other images holding both')
            found += [Finding(name, a, 'overlap', score, text, b),
                      Finding(name, b, 'overlap', score, text, a)]
    return found


def rule_findings(facts: Sequence[ImageFacts],
                  stats: LabelStats | None = None) -> tuple[list[Finding], LabelStats]:
    """Every anatomy rule over every labeled image.

    Returns:
        ``(findings, stats)``: the findings (unranked) and the habits they were measured
        against.
    """
    stats = label_stats(facts) if stats is None else stats
    labeled = [f for f in facts if f.labeled]
    found = []
    for k, f in enumerate(labeled):
        found += image_findings(f, stats, k)
    return found, stats

