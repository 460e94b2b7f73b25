"""The pose of a hand from its bone polygons: how far the wrist is bent, and which hand.

On the real data about 60% of test images show a bent wrist against 12% of training
images (LEADERBOARD.md), and the 2023 winners stratified their folds by wrist angle; these
give the stratification its labels (``datasets.folds``).
"""
from collections.abc import Sequence

import numpy as np

from ..classes import CLASS_INDEX
from .labels import Polygon

FOREARM = ('Radius', 'Ulna')
MIDDLE_FINGER = ('finger-11', 'finger-8')  # its metacarpal, its distal phalanx
# A wrist bent this far or more counts as bent (the folds' strata, the data report's share)
BENT_DEGREES = 15.0
THUMB, LITTLE = ('finger-1', 'finger-2', 'finger-3'), ('finger-16', 'finger-17', 'finger-18',
                                                       'finger-19')


def centroid(polygons: Sequence[Polygon], names: Sequence[str]) -> np.ndarray | None:
    """Area-weighted centroid (x, y) of the named classes' polygons, or None if absent."""
    wanted = {CLASS_INDEX[n] for n in names}
    total, moment = 0.0, np.zeros(2)
    for cls, points in polygons:
        if cls not in wanted:
            continue
        p = np.asarray(points, np.float64)
        x, y = p[:, 0], p[:, 1]
        x1, y1 = np.roll(x, -1), np.roll(y, -1)
        cross = x * y1 - x1 * y
        area = cross.sum() / 2
        if abs(area) < 1e-9:  # a degenerate polygon: its vertices' mean
            total, moment = total + 1e-9, moment + 1e-9 * p.mean(0)
            continue
        centre = np.array([((x + x1) * cross).sum(), ((y + y1) * cross).sum()]) / (6 * area)
        total += abs(area)
        moment += abs(area) * centre
    return moment / total if total > 0 else None


def _long_axis(polygons: Sequence[Polygon], name: str, towards: np.ndarray
                ) -> np.ndarray | None:
    """Unit long axis of one bone (its points' first principal direction), pointing to
    ``towards``, or None if absent."""
    points = [np.asarray(p, np.float64) for c, p in polygons if c == CLASS_INDEX[name]]
    if not points:
        return None
    p = np.concatenate(points)
    centre = p.mean(0)
    axis = np.linalg.eigh((p - centre).T @ (p - centre))[1][:, -1]
    return axis if axis @ (towards - centre) >= 0 else -axis


def hand_pose(polygons: Sequence[Polygon]) -> tuple[float, str] | None:
    """``(wrist angle in degrees, 'left' or 'right')`` of one image's labels, or None.

    The angle is between the forearm's axis (the mean of the Radius's and the Ulna's long
    axes, pointing to the hand) and the middle finger's (metacarpal to distal phalanx): 0
    for a straight wrist, signed, in image coordinates. The side comes from which side of
    the forearm axis the thumb lies on, against the little finger, in a PA view. None where
    a bone it needs is not labeled.
    """
    forearm = centroid(polygons, FOREARM)
    base, tip = (centroid(polygons, [n]) for n in MIDDLE_FINGER)
    thumb, little = centroid(polygons, THUMB), centroid(polygons, LITTLE)
    if any(v is None for v in (forearm, base, tip, thumb, little)):
        return None
    axes = [_long_axis(polygons, n, base) for n in FOREARM]
    arm = sum(axes) if all(a is not None for a in axes) else base - forearm
    finger = tip - base
    angle = np.degrees(np.arctan2(arm[0] * finger[1] - arm[1] * finger[0], arm @ finger))
    across = thumb - little
    # image y points down: the thumb to the arm's right (cross > 0) is a left hand's in PA
    side = 'left' if arm[0] * across[1] - arm[1] * across[0] > 0 else 'right'
    return float(angle), side
