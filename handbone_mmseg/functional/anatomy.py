"""The layout of the hand in its labels: which bone lies beyond or beside which, and a frame
of reference that the hand carries with it; pure numpy.

The class names (docs/format.md) map to bones as follows: ``finger-1`` to ``finger-3`` are
the thumb's distal phalanx, proximal phalanx and metacarpal; each other ray has four,
distal to proximal: index ``finger-4`` to ``finger-7``, middle ``finger-8`` to
``finger-11``, ring ``finger-12`` to ``finger-15``, little ``finger-16`` to ``finger-19``.
The tables below list them proximal to distal along a ray and thumb to little finger
across the hand; ``ORDER_CHAINS`` are the orders the label audit checks.

The hand frame (``hand_frame``) is set by the carpals and the fingers, not by the forearm:
a bent wrist turns the hand against the forearm, and the frame turns with the hand. Its
origin is the mean of the carpals' centroids, its ``along`` axis points to the mean of the
fingers' centroids and its unit is that distance, so the frame is the same for a large or
a small hand, turned or mirrored. Both means are sums over a whole group of bones, so a swap
of two labels inside the group moves neither the origin nor the axes.
"""
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..classes import CLASS_INDEX, CLASSES

# Each ray, proximal to distal (metacarpal first); thumb to little finger.
RAYS: tuple[tuple[str, ...], ...] = (
    ('finger-3', 'finger-2', 'finger-1'),
    ('finger-7', 'finger-6', 'finger-5', 'finger-4'),
    ('finger-11', 'finger-10', 'finger-9', 'finger-8'),
    ('finger-15', 'finger-14', 'finger-13', 'finger-12'),
    ('finger-19', 'finger-18', 'finger-17', 'finger-16'),
)
RAY_NAMES = ('thumb', 'index', 'middle', 'ring', 'little')
# The same bone of every ray, thumb to little finger (the thumb has no middle phalanx).
FINGER_LEVELS: tuple[tuple[str, ...], ...] = (
    ('finger-3', 'finger-7', 'finger-11', 'finger-15', 'finger-19'),
    ('finger-2', 'finger-6', 'finger-10', 'finger-14', 'finger-18'),
    ('finger-5', 'finger-9', 'finger-13', 'finger-17'),
    ('finger-1', 'finger-4', 'finger-8', 'finger-12', 'finger-16'),
)
LEVEL_NAMES = ('metacarpals', 'proximal phalanges', 'middle phalanges', 'distal phalanges')
# The carpal rows, from the thumb's side (radial) to the little finger's (ulnar).
CARPAL_ROWS: tuple[tuple[str, ...], ...] = (
    ('Scaphoid', 'Lunate', 'Triquetrum', 'Pisiform'),
    ('Trapezium', 'Trapezoid', 'Capitate', 'Hamate'),
)
FINGERS = tuple(f'finger-{i}' for i in range(1, 20))
CARPALS = CARPAL_ROWS[0] + CARPAL_ROWS[1]
FOREARM = ('Radius', 'Ulna')

ALONG, ACROSS = 0, 1  # the columns of frame coordinates


@dataclass(frozen=True)
class Chain:
    """Bones that lie in this order along one axis of the hand frame.

    Attributes:
        name: what a person calls them, e.g. ``'middle ray'``.
        axis: ``ALONG`` (proximal to distal) or ``ACROSS`` (thumb side to little-finger side).
        classes: the class names, in that order.
    """

    name: str
    axis: int
    classes: tuple[str, ...]


ORDER_CHAINS: tuple[Chain, ...] = (
    *(Chain(f'{name} ray', ALONG, ray) for name, ray in zip(RAY_NAMES, RAYS)),
    *(Chain(name, ACROSS, level) for name, level in zip(LEVEL_NAMES, FINGER_LEVELS)),
    Chain('proximal carpal row', ACROSS, CARPAL_ROWS[0]),
    Chain('distal carpal row', ACROSS, CARPAL_ROWS[1]),
    # forearm, carpal rows and metacarpals follow one another along the hand
    Chain('radial column', ALONG, ('Radius', 'Scaphoid', 'Trapezium', 'finger-3')),
    Chain('central column', ALONG, ('Lunate', 'Capitate', 'finger-11')),
    Chain('ulnar column', ALONG, ('Ulna', 'Triquetrum', 'Hamate', 'finger-19')),
    Chain('forearm', ACROSS, FOREARM),
)

_RAY_OF = {name: k for k, ray in enumerate(RAYS) for name in ray}
_FINGER_INDEX = np.array([CLASS_INDEX[n] for n in FINGERS])
_CARPAL_INDEX = np.array([CLASS_INDEX[n] for n in CARPALS])
_FINGER_RAY = np.array([_RAY_OF[n] for n in FINGERS], np.float64)
MIN_FINGERS, MIN_CARPALS = 5, 3


def polygon_area(points: np.ndarray) -> float:
    """Area enclosed by a polygon (shoelace formula), in squared point units.

    Shape:
        points: (K, 2) x, y.
    """
    p = np.asarray(points, np.float64)
    x, y = p[:, 0], p[:, 1]
    return float(abs(x @ np.roll(y, -1) - y @ np.roll(x, -1)) / 2)


@dataclass(frozen=True)
class HandFrame:
    """A hand's own axes in the image (see the module docstring).

    Attributes:
        origin: (2,) x, y of the carpals' mean centroid, in pixels.
        along: (2,) unit vector from the carpals towards the fingers.
        across: (2,) unit vector from the thumb's side towards the little finger's.
        scale: pixels from the origin to the fingers' mean centroid: the frame's unit.
    """

    origin: np.ndarray
    along: np.ndarray
    across: np.ndarray
    scale: float

    def coords(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) ``along, across`` coordinates of (N, 2) x, y points, in frame units."""
        shifted = (np.asarray(points, np.float64) - self.origin) / self.scale
        return np.stack([shifted @ self.along, shifted @ self.across], -1)


def hand_frame(centroids: np.ndarray) -> HandFrame | None:
    """The hand frame of one image from its classes' centroids, or None.

    The ``across`` axis is turned to whichever side puts the rays in their order from the
    thumb to the little finger (a least-squares fit of ray number on position over every
    finger bone), so left and right hands, in any view, get the same coordinates; a swap of
    two labels does not turn it.

    Args:
        centroids: (C, 2) x, y per class in ``CLASSES`` order, NaN where a class is absent.

    Returns:
        None when fewer than ``MIN_FINGERS`` finger bones or ``MIN_CARPALS`` carpals are
        labeled, or the two means coincide.
    """
    centroids = np.asarray(centroids, np.float64)
    if centroids.shape != (len(CLASSES), 2):
        raise ValueError(f'expected ({len(CLASSES)}, 2) centroids, got {centroids.shape}')
    fingers, carpals = centroids[_FINGER_INDEX], centroids[_CARPAL_INDEX]
    has_finger, has_carpal = ~np.isnan(fingers[:, 0]), ~np.isnan(carpals[:, 0])
    if has_finger.sum() < MIN_FINGERS or has_carpal.sum() < MIN_CARPALS:
        return None
    origin = carpals[has_carpal].mean(0)
    axis = fingers[has_finger].mean(0) - origin
    scale = float(np.hypot(*axis))
    if scale <= 1e-9:
        return None
    along = axis / scale
    across = np.array([-along[1], along[0]])
    side = (fingers[has_finger] - origin) @ across
    rays = _FINGER_RAY[has_finger]
    if (side - side.mean()) @ (rays - rays.mean()) < 0:
        across = -across
    return HandFrame(origin, along, across, scale)


def outside_distance(point: np.ndarray, others: Sequence[np.ndarray]) -> float:
    """Signed distance from ``point`` to the convex hull of ``others``' points: positive
    outside, negative inside (pixels); NaN without at least 3 points.

    Shape:
        point: (2,) x, y; others: (K_i, 2) arrays.
    """
    if not len(others):
        return float('nan')
    points = np.concatenate([np.asarray(p, np.float32).reshape(-1, 2) for p in others])
    if len(points) < 3:
        return float('nan')
    hull = cv2.convexHull(points)
    return -float(cv2.pointPolygonTest(hull, (float(point[0]), float(point[1])), True))
