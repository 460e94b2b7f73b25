"""Synthetic hand X-ray phantoms written in the hand-bone data layout.

:func:`generate_phantom` writes train images with their polygon JSONs, unlabelled test images
and, on request, the test labels in a folder of their own, in the layout and JSON schema of
``docs/format.md``, so that every tool of the project runs without the (non-public) real
data. Each patient has a right and a left hand: the same bone geometry, mirrored, in two
independent random poses (scale, arm rotation, bent wrist, finger spread, position).

The ground truth is the integer polygons in the JSON and the image is rendered from exactly
these polygons, so a mask rasterised with ``cv2.fillPoly`` covers the bone that is drawn.

Class mapping of the finger rays (names run from distal to proximal):

=======  ==============================================================
thumb    finger-1 distal phalanx, finger-2 proximal phalanx, finger-3 metacarpal
index    finger-4 distal, finger-5 middle, finger-6 proximal phalanx, finger-7 metacarpal
middle   finger-8 .. finger-11 (same order)
ring     finger-12 .. finger-15
little   finger-16 .. finger-19
=======  ==============================================================

The 8 carpals, the radius and the ulna carry their own names. Trapezium/Trapezoid and
Triquetrum/Pisiform overlap by design, as they do in real PA views; other bones are
separated by small joint gaps.

With ``label_noise`` some train JSONs get one planted error each, the mistakes found in the
real labels, recorded in ``planted_errors.json`` (``PLANTED_FILE``) beside ``train/``:

=============  ===========================================================================
finger_swap    the labels of one bone and the same bone of a neighbouring ray exchanged
carpal_swap    the labels of two neighbouring carpals exchanged
shift          one bone's polygon moved by 35-60% of its extent in a random direction
missing        one bone's annotation left out
extra          an accessory ossicle beside a border bone, drawn in the image and labeled as
               a second polygon of that bone
=============  ===========================================================================

The image shows the true bones (and the ossicle), so a model trained elsewhere sees what
the label gets wrong. Without ``label_noise`` every byte is what it was before the option
existed: the planted errors draw from a random stream of their own.
"""
from __future__ import annotations

import json
import multiprocessing
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from .classes import CLASSES
from .functional.anatomy import CARPAL_ROWS, FINGER_LEVELS
from .io.atomic import atomic_open
from .utils.progress import track

__all__ = ['NOISE_KINDS', 'PLANTED_FILE', 'generate_phantom', 'read_planted']

NOISE_KINDS = ('finger_swap', 'carpal_swap', 'shift', 'missing', 'extra')
PLANTED_FILE = 'planted_errors.json'
PLANTED_FORMAT = 'handbone-planted/1'

# Canonical right hand in a PA view, in cm with y up: thumb and radius at negative x, the
# distal end of the radius at y = 0. A ray is its metacarpal base, its direction in degrees
# (positive towards the ulna) and its bones proximal to distal as (class, length, widths at
# base / shaft / head).
_RAYS = (
    ((-2.45, 3.05), -38.0, (('finger-3', 4.3, 1.15, 0.85, 1.05), ('finger-2', 3.0, 1.0, 0.7, 0.85),
                           ('finger-1', 2.3, 0.85, 0.6, 0.65))),
    ((-0.95, 3.45), -7.0, (('finger-7', 6.3, 0.95, 0.7, 1.05), ('finger-6', 3.9, 0.95, 0.7, 0.8),
                           ('finger-5', 2.3, 0.8, 0.6, 0.7), ('finger-4', 1.7, 0.7, 0.5, 0.55))),
    ((0.1, 3.65), 0.0, (('finger-11', 6.2, 1.0, 0.75, 1.1), ('finger-10', 4.3, 1.0, 0.75, 0.85),
                        ('finger-9', 2.8, 0.85, 0.65, 0.75), ('finger-8', 1.9, 0.75, 0.55, 0.6))),
    ((1.15, 3.5), 7.0, (('finger-15', 5.7, 0.9, 0.65, 1.0), ('finger-14', 4.0, 0.9, 0.7, 0.8),
                        ('finger-13', 2.6, 0.8, 0.6, 0.7), ('finger-12', 1.8, 0.7, 0.5, 0.55))),
    ((2.05, 3.25), 14.0, (('finger-19', 5.1, 0.85, 0.6, 0.9), ('finger-18', 3.2, 0.8, 0.6, 0.7),
                          ('finger-17', 1.9, 0.7, 0.55, 0.6), ('finger-16', 1.6, 0.65, 0.45, 0.5))),
)
# Carpals as (class, centre, (width, height), rotation in degrees towards the ulna).
_CARPALS = (
    ('Scaphoid', (-1.4, 0.95), (1.95, 1.0), 50.0),
    ('Lunate', (0.1, 0.85), (1.4, 1.25), 0.0),
    ('Triquetrum', (1.5, 1.05), (1.2, 1.1), 20.0),
    ('Pisiform', (2.12, 0.85), (0.9, 0.9), 0.0),
    ('Trapezium', (-2.0, 2.45), (1.4, 1.25), -30.0),
    ('Trapezoid', (-1.05, 2.7), (1.0, 1.2), 0.0),
    ('Capitate', (0.15, 2.6), (1.15, 1.9), 0.0),
    ('Hamate', (1.45, 2.5), (1.2, 1.6), 15.0),
)
# Radius and ulna as (class, distal end, length, widths); they stay put when the wrist bends.
_FOREARM = (('Radius', (-0.75, -0.1), 8.4, (1.4, 1.3, 3.0)),
            ('Ulna', (1.6, -0.6), 7.9, (1.2, 1.0, 1.6)))
_CARPAL_NAMES = tuple(c[0] for c in _CARPALS)
_METACARPALS = ('finger-3', 'finger-7', 'finger-11', 'finger-15', 'finger-19')
_WRIST_PIVOT = (0.0, 1.6)  # head of the capitate, the centre of radial/ulnar deviation
_JOINT_GAP = 0.22          # cm between consecutive bones of a ray
_TISSUE = 0.6              # cm of soft tissue around the bones
_POINTS = {'long': 48, 'forearm': 64, 'carpal': 32}
# Neighbours whose labels a planted swap exchanges: the same bone of two neighbouring rays,
# and carpals side by side in a row or one above the other.
_FINGER_NEIGHBOURS = tuple((row[i], row[i + 1]) for row in FINGER_LEVELS
                           for i in range(len(row) - 1))
_CARPAL_NEIGHBOURS = tuple((row[i], row[i + 1]) for row in CARPAL_ROWS
                           for i in range(len(row) - 1)) + (('Lunate', 'Capitate'), )
# Bones at the border of the hand, where an accessory ossicle sits beside them (sesamoids of
# the thumb and little finger, os trapezium secundarium, os hamuli ...) clear of the others.
_ACCESSORY_HOSTS = ('finger-3', 'finger-2', 'finger-19', 'finger-18', 'Trapezium',
                    'Scaphoid', 'Pisiform', 'Triquetrum')


@dataclass(frozen=True)
class _Case:
    """Everything one worker needs to render and write one image."""

    seed: int
    patient: int  # 0-based over train and test patients
    side: int     # 0 right hand, 1 left hand (the mirror image)
    size: int
    pid: str
    timestamp: int
    image_path: Path
    json_path: Path | None
    noise: tuple | None = None  # a planted label error: (kind, classes, parameters)


def _rotation(deg: float) -> np.ndarray:
    """Matrix turning +y by ``deg`` towards +x; points (rows) are turned by ``pts @ rot.T``."""
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def _long_bone(length: float, widths: tuple[float, float, float], n: int) -> np.ndarray:
    """Outline of a long bone along +y from 0 to ``length``: a shaft flaring into rounded ends."""
    w0, w1, w2 = widths
    m = n // 4
    # Caps as deep as a third of the end width keep phalanges round; the radius stays flatter.
    d0, d2 = 0.35 * min(w0, 1.2), 0.35 * min(w2, 1.2)
    t = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, m))  # denser near the ends, where it bends
    y = d0 + t * (length - d0 - d2)
    flare = np.exp(-(t / 0.2) ** 2), np.exp(-((1 - t) / 0.2) ** 2)
    half = 0.5 * (w1 + (w0 - w1) * flare[0] + (w2 - w1) * flare[1])
    phi = np.linspace(0.0, np.pi, m + 2)[1:-1]
    right = np.stack([half, y], 1)
    head = np.stack([0.5 * w2 * np.cos(phi), length - d2 + d2 * np.sin(phi)], 1)
    left = right[::-1] * (-1.0, 1.0)
    base = np.stack([-0.5 * w0 * np.cos(phi), d0 - d0 * np.sin(phi)], 1)
    return np.concatenate([right, head, left, base])


def _carpal(width: float, height: float, rng: np.random.Generator) -> np.ndarray:
    """Outline of a carpal: an ellipse with a little low-order wobble of its own."""
    theta = np.linspace(0.0, 2 * np.pi, _POINTS['carpal'], endpoint=False)
    amp, phase = rng.uniform(0.0, 0.03, 2), rng.uniform(0.0, 2 * np.pi, 2)
    r = 1 + amp[0] * np.cos(2 * theta + phase[0]) + amp[1] * np.cos(3 * theta + phase[1])
    return np.stack([0.5 * width * r * np.cos(theta), 0.5 * height * r * np.sin(theta)], 1)


def _canonical_hand(anatomy: np.random.Generator,
                    pose: np.random.Generator) -> dict[str, np.ndarray]:
    """Bone outlines (cm, y up) of one right hand: patient anatomy, then this image's pose."""
    # Long bones vary in length; carpals keep their size so that the joint gaps stay open.
    stretch = dict(zip(CLASSES, 1 + 0.04 * anatomy.standard_normal(len(CLASSES))))
    carpals = {name: _carpal(w, h, anatomy) for name, _, (w, h), _ in _CARPALS}
    bones = {}
    for name, end, length, widths in _FOREARM:
        length *= stretch[name]  # from the fixed wrist end, so the wrist joint stays open
        bones[name] = _long_bone(length, widths, _POINTS['forearm']) + (end[0], end[1] - length)
    for name, centre, _, angle in _CARPALS:
        bones[name] = carpals[name] @ _rotation(angle).T + centre
    # Fingers fan out or close together as a whole, plus a little play of each ray and joint.
    fan = pose.uniform(0.7, 1.4)
    for base, angle, chain in _RAYS:
        angle = angle * fan + pose.uniform(-2.0, 2.0)
        joint = np.asarray(base, dtype=float)
        for name, length, *widths in chain:
            length *= stretch[name]
            rot = _rotation(angle)
            bones[name] = _long_bone(length, tuple(widths), _POINTS['long']) @ rot.T + joint
            joint = joint + (length + _JOINT_GAP) * rot[:, 1]
            angle += pose.uniform(-3.0, 3.0)
    return bones


def _bend_wrist(bones: dict[str, np.ndarray], deg: float) -> None:
    """Rotate carpus and hand about the wrist, lifted so the carpus clears the forearm."""
    low = min(bones[n][:, 1].min() for n in _CARPAL_NAMES)
    rot = _rotation(deg)
    for name in bones:
        if name not in ('Radius', 'Ulna'):
            bones[name] = (bones[name] - _WRIST_PIVOT) @ rot.T + _WRIST_PIVOT
    # Keeping the lowest carpal point where it was keeps the radiocarpal joint space open.
    lift = max(0.0, low - min(bones[n][:, 1].min() for n in _CARPAL_NAMES))
    for name in bones:
        if name not in ('Radius', 'Ulna'):
            bones[name] = bones[name] + (0.0, lift)


def _pose_hand(anatomy: np.random.Generator, pose: np.random.Generator, side: int,
               size: int) -> tuple[dict[str, np.ndarray], list[np.ndarray], float]:
    """Integer bone polygons in image pixels, soft-tissue-only polygons and the pixels per cm."""
    bones = _canonical_hand(anatomy, pose)
    ys = np.concatenate(list(bones.values()))[:, 1]
    length = ys.max() - ys.min()
    _bend_wrist(bones, pose.uniform(-45.0, 45.0))
    # The sleeve carries the forearm's soft tissue out of the image; the palm fills the web
    # between the metacarpals and the thumb.
    sleeve = np.array([[-2.5, -60.0], [2.8, -60.0], [2.2, -1.5], [-2.0, -1.5]])
    palm = np.concatenate([bones[n] for n in (*_CARPAL_NAMES, *_METACARPALS)])
    palm = cv2.convexHull(palm.astype(np.float32))[:, 0].astype(float)
    flip = np.array([-1.0 if side else 1.0, -1.0])  # mirror the left hand; image y runs down
    rot = _rotation(pose.uniform(-15.0, 15.0))
    placed = {name: (pts * flip) @ rot.T for name, pts in bones.items()}
    extras = [(pts * flip) @ rot.T for pts in (sleeve, palm)]
    every = np.concatenate(list(placed.values()))
    lo, hi = every.min(0) - 1.3 * _TISSUE, every.max(0) + 1.3 * _TISSUE
    # Scale by the unbent length, shrunk where a bent or turned hand would leave the image.
    scale = min(pose.uniform(0.70, 0.90) * size / length, (size - 1) / (hi - lo).max())
    shift = pose.uniform(-lo * scale, size - 1 - hi * scale)
    polys = {name: np.clip(np.rint(pts * scale + shift), 0, size - 1).astype(np.int32)
             for name, pts in placed.items()}
    return polys, [np.rint(p * scale + shift).astype(np.int32) for p in extras], scale


def _soft_tissue(polys: list[np.ndarray], size: int, px_per_cm: float) -> np.ndarray:
    """Soft-tissue thickness in [0, 1]: bones dilated by the tissue depth, rounded at the edge."""
    # Tissue is smooth, so a raster of about 256 pixels is enough and keeps 2048 images fast.
    factor = max(1, size // 256)
    low = -(-size // factor)
    depth = _TISSUE * px_per_cm / factor
    mask = np.zeros((low, low), np.uint8)
    for pts in polys:
        small = np.rint(pts / factor).astype(np.int32)
        # One call per polygon: fillPoly fills a list by the even-odd rule, punching overlaps out.
        cv2.fillPoly(mask, [small], 1)
        cv2.polylines(mask, [small], True, 1, thickness=max(1, round(2 * depth)))
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    # A cylinder-like profile: thickness rises quickly inside the skin line, then levels off.
    tissue = np.sqrt(np.clip(dist / (1.5 * depth), 0.0, 1.0)).astype(np.float32)
    tissue = cv2.GaussianBlur(tissue, (0, 0), max(0.5, 0.3 * depth))
    tissue = cv2.resize(tissue, (low * factor, low * factor), interpolation=cv2.INTER_LINEAR)
    return tissue[:size, :size]


def _render(polys: dict[str, np.ndarray], extras: list[np.ndarray], size: int, px_per_cm: float,
            rng: np.random.Generator) -> np.ndarray:
    """An 8-bit X-ray-like image (3 equal channels) of the bone polygons."""
    tissue = _soft_tissue([*polys.values(), *extras], size, px_per_cm)
    image = 0.06 + rng.uniform(0.24, 0.30) * tissue
    cortex = max(1, round(0.12 * px_per_cm))
    for pts in polys.values():
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0) + 1
        local = pts - (x0, y0)
        fill = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(fill, [local], 1)
        rim = np.zeros_like(fill)
        # The rim is drawn on the outline and cut to the inside, so the bone never grows past it.
        cv2.polylines(rim, [local], True, 1, thickness=2 * cortex)
        level = rng.uniform(0.20, 0.26)
        image[y0:y1, x0:x1] += level * fill + rng.uniform(0.10, 0.14) * (fill & rim)
    image = cv2.GaussianBlur(image, (0, 0), max(0.5, size / 1400))
    # Uneven exposure: a smooth multiplicative field from a coarse random grid.
    gain = cv2.resize(rng.uniform(0.85, 1.12, (3, 3)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_LINEAR)
    image = image * gain + 0.012 * rng.standard_normal((size, size), dtype=np.float32)
    grey = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _annotation(case: _Case, entries: list[tuple[str, np.ndarray]],
                ids: np.random.Generator) -> dict:
    """The JSON document of one image, in the schema of the real annotation tool.

    Args:
        entries: ``(label, points)`` per annotation, in file order.
    """
    def uid() -> str:
        return str(uuid.UUID(bytes=ids.bytes(16), version=4))

    day = datetime.fromtimestamp(case.timestamp / 1000, tz=timezone.utc).strftime('%Y%m%d')
    return {
        'annotations': [{'id': uid(), 'type': 'poly_seg', 'attributes': {}, 'label': name,
                         'points': points.tolist()} for name, points in entries],
        'attributes': {},
        'file_id': uid(),
        'filename': case.image_path.name,
        'parent_path': f'/X-ray_UNIST/{day}/{case.pid}/USB',
        'last_modifier_id': uid(),
        'metadata': {'height': case.size, 'width': case.size},
        'last_workers': {},
    }


def _plant(case: _Case, polys: dict[str, np.ndarray], px_per_cm: float
           ) -> tuple[list[tuple[str, np.ndarray]], np.ndarray | None, dict]:
    """The annotations of one image with its planted error.

    Returns:
        ``(entries, accessory, record)``: the ``(label, points)`` annotations, the ossicle's
        polygon to draw in the image (``extra``; else None) and the error's record for
        ``planted_errors.json``.
    """
    kind, classes, params = case.noise
    labels = {name: [polys[name]] for name in CLASSES}
    accessory, detail = None, {}
    if kind in ('finger_swap', 'carpal_swap'):
        a, b = classes
        labels[a], labels[b] = labels[b], labels[a]
    elif kind == 'shift':
        (name, ), (angle, fraction) = classes, params
        direction = np.array([np.cos(angle), np.sin(angle)])
        # a fraction of the bone's own extent that way: Dice with the truth about 1 - fraction
        offset = np.rint(direction * fraction * np.ptp(polys[name] @ direction)).astype(np.int32)
        labels[name] = [np.clip(polys[name] + offset, 0, case.size - 1)]
        detail = dict(dx=int(offset[0]), dy=int(offset[1]))
    elif kind == 'missing':
        labels[classes[0]] = []
    else:  # extra: an ossicle just outside its host, on the side away from the hand
        (name, ), (radius_cm, ) = classes, params
        host = polys[name].astype(np.float64)
        centre = host.mean(0)
        out = centre - np.concatenate(list(polys.values())).mean(0)
        if name.startswith('finger'):  # beside the shaft, not beyond its end
            spread = host - centre
            axis = np.linalg.eigh(spread.T @ spread)[1][:, -1]
            out = out - (out @ axis) * axis
        out = out / max(np.hypot(*out), 1e-9)
        radius = radius_cm * px_per_cm
        centre = centre + out * (((host - centre) @ out).max() + radius + _JOINT_GAP * px_per_cm)
        theta = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
        ring = np.stack([radius * np.cos(theta), 0.8 * radius * np.sin(theta)], 1)
        accessory = np.clip(np.rint(centre + ring), 0, case.size - 1).astype(np.int32)
        labels[name] = labels[name] + [accessory]
        detail = dict(centre=[round(float(v), 1) for v in centre], radius=round(radius, 1))
    entries = [(name, points) for name in CLASSES for points in labels[name]]
    record = dict(image=case.image_path.name, patient=case.pid, kind=kind,
                  classes=list(classes), **detail)
    return entries, accessory, record


def _write_case(case: _Case) -> dict | None:
    """Render one hand and write its PNG (and JSON); the per-case unit of the worker pool.

    Returns:
        The record of the planted error, or None.
    """
    # Both hands of a patient share the anatomy stream. Tags and 1-based indices keep every key
    # free of trailing zeros, which SeedSequence would treat as absent.
    anatomy = np.random.default_rng(np.random.SeedSequence([case.seed, 2, case.patient + 1]))
    pose = np.random.default_rng(
        np.random.SeedSequence([case.seed, 3, case.patient + 1, case.side + 1]))
    polys, extras, px_per_cm = _pose_hand(anatomy, pose, case.side, case.size)
    entries, drawn, record = [(name, polys[name]) for name in CLASSES], polys, None
    if case.noise is not None:
        entries, accessory, record = _plant(case, polys, px_per_cm)
        if accessory is not None:
            drawn = {**polys, 'accessory': accessory}
    if not cv2.imwrite(str(case.image_path), _render(drawn, extras, case.size, px_per_cm, pose)):
        raise OSError(f'could not write {case.image_path}')
    if case.json_path is not None:
        doc = _annotation(case, entries, pose)
        case.json_path.write_text(json.dumps(doc), encoding='utf-8')
    return record


def _plan(root: Path, seed: int, patients: int, test_patients: int, test_labels: bool,
          size: int) -> list[_Case]:
    """Names, paths and seeds of every image, drawn here so that they do not depend on workers."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    timestamp = 1_660_000_000_000 + int(rng.integers(0, 10**10))
    cases = []
    for patient in range(patients + test_patients):
        pid = f'ID{patient + 1:03d}'
        train = patient < patients
        first = int(rng.integers(2))  # which hand was taken first
        for k in range(2):
            side = first ^ k
            # Increasing timestamps: a visit a few minutes to a day after the last, then 5-60 s
            # between the two hands; 999 patients stay well inside 13 digits.
            step = rng.integers(5_000, 60_000) if k else rng.integers(300_000, 86_400_000)
            timestamp += int(step)
            suffix = ('_R', '_L')[side] if rng.random() < 0.25 else ''
            stem = f'image{timestamp}{suffix}'
            labels = 'train' if train else 'test_labels'
            cases.append(_Case(
                seed=seed, patient=patient, side=side, size=size, pid=pid, timestamp=timestamp,
                image_path=root / ('train' if train else 'test') / 'DCM' / pid / f'{stem}.png',
                json_path=(root / labels / 'outputs_json' / pid / f'{stem}.json'
                           if train or test_labels else None)))
    return cases


def _plan_noise(cases: list[_Case], patients: int, seed: int, rate: float) -> list[_Case]:
    """Give ``round(rate * train images)`` train cases (at least one) a planted error each.

    The images, kinds (the five in turn, as evenly as the count allows), bones and parameters
    are drawn from a stream of their own, so the rest of the data set is the same bytes as
    without noise (except the image of an ``extra``, which shows the ossicle).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    train = [i for i, case in enumerate(cases) if case.patient < patients]
    count = min(len(train), max(1, round(rate * len(train))))
    chosen = sorted(rng.choice(len(train), count, replace=False).tolist())
    kinds = [NOISE_KINDS[k % len(NOISE_KINDS)] for k in rng.permutation(count)]
    cases = list(cases)
    for index, kind in zip(chosen, kinds):
        if kind == 'finger_swap':
            classes = _FINGER_NEIGHBOURS[int(rng.integers(len(_FINGER_NEIGHBOURS)))]
            params = ()
        elif kind == 'carpal_swap':
            classes = _CARPAL_NEIGHBOURS[int(rng.integers(len(_CARPAL_NEIGHBOURS)))]
            params = ()
        elif kind == 'shift':
            classes = (CLASSES[int(rng.integers(len(CLASSES)))], )
            params = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.35, 0.6)))
        elif kind == 'missing':
            classes, params = (CLASSES[int(rng.integers(len(CLASSES)))], ), ()
        else:
            classes = (_ACCESSORY_HOSTS[int(rng.integers(len(_ACCESSORY_HOSTS)))], )
            params = (float(rng.uniform(0.22, 0.35)), )
        cases[train[index]] = replace(cases[train[index]], noise=(kind, classes, params))
    return cases


def read_planted(root: str | Path) -> list[dict]:
    """The planted errors of a phantom written with ``label_noise``: one dict per error with
    ``image``, ``patient``, ``kind`` and ``classes`` (and the kind's parameters).

    Raises:
        FileNotFoundError: no ``planted_errors.json`` in ``root``.
        ValueError: a file of another format; names it.
    """
    path = Path(root) / PLANTED_FILE
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no planted errors (write the phantom with '
                                'label_noise / --label-noise)')
    try:
        doc = json.loads(path.read_text(encoding='utf-8'))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f'{path}: not a planted-errors file ({e})') from None
    if not isinstance(doc, dict) or doc.get('format') != PLANTED_FORMAT:
        raise ValueError(f'{path}: not a planted-errors file (format {PLANTED_FORMAT!r})')
    return doc['errors']


def _check_int(name: str, value: object, low: int) -> None:
    """Reject anything but an integer >= ``low``, naming the argument and its value."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f'{name} must be an integer >= {low}, got {value!r}')


def generate_phantom(out_dir: str | Path, patients: int, size: int = 2048, seed: int = 0,
                     test_patients: int | None = None, test_labels: bool = False,
                     workers: int = 1, progress: bool = False, label_noise: float = 0.0) -> dict:
    """Write a synthetic hand-bone data set in the layout of the real one.

    Args:
        out_dir: Root folder; gets ``train/{DCM,outputs_json}``, ``test/DCM`` and, with
            ``test_labels``, ``test_labels/outputs_json``. Those folders must not hold files yet.
        patients: Train patients (two images each), IDs from ID001 on.
        size: Side of the square images in pixels.
        seed: Every byte written is a function of the arguments (``workers`` aside).
        test_patients: Test patients, IDs after the train ones; default ``max(1, patients // 4)``.
        test_labels: Also write the test JSONs, apart from the test images.
        workers: Processes rendering images in parallel; 1 renders in this process. Above 1
            they are spawned, so a script that calls this at its top level needs Python's
            ``if __name__ == '__main__':`` guard.
        progress: Show a progress bar (only where stderr is a terminal).
        label_noise: Share of the train images, in [0, 1], whose JSON gets one planted error
            (at least one image when above 0; see the module docstring), recorded in
            ``out_dir/planted_errors.json``. 0: none, and no such file.

    Returns:
        Counts and folders: ``root``, ``train_dir``, ``test_dir``, ``test_labels_dir`` (None
        without test labels), ``train_patients``, ``test_patients``, ``train_images``,
        ``test_images``, ``size``, ``seed``, ``planted`` (the number of planted errors) and
        ``planted_file`` (None without noise).
    """
    _check_int('patients', patients, 1)
    if test_patients is None:
        test_patients = max(1, patients // 4)
    for name, value, low in (('size', size, 64), ('seed', seed, 0),
                             ('test_patients', test_patients, 0), ('workers', workers, 1)):
        _check_int(name, value, low)
    if isinstance(label_noise, bool) or not isinstance(label_noise, (int, float)) \
            or not 0 <= label_noise <= 1:
        raise ValueError(f'label_noise must be a number in [0, 1], got {label_noise!r}')
    if patients + test_patients > 999:
        raise ValueError(f'patient IDs have 3 digits: patients + test_patients must be <= 999, '
                         f'got {patients} + {test_patients}')
    root = Path(out_dir)
    for split in ('train', 'test', 'test_labels'):
        # Refuse rather than mix with (or delete) an earlier data set, which may be real data.
        if (root / split).is_dir() and any((root / split).iterdir()):
            raise FileExistsError(f'{root / split} already holds files; choose an empty out_dir')
    cases = _plan(root, int(seed), int(patients), int(test_patients), bool(test_labels), int(size))
    if label_noise > 0:
        cases = _plan_noise(cases, int(patients), int(seed), float(label_noise))
    for case in cases:
        case.image_path.parent.mkdir(parents=True, exist_ok=True)
        if case.json_path is not None:
            case.json_path.parent.mkdir(parents=True, exist_ok=True)
    bar = dict(total=len(cases), description='phantom', enabled=None if progress else False)
    planted = []
    if workers == 1:
        for case in track(cases, **bar):
            planted.append(_write_case(case))
    else:
        # One OpenCV thread per worker: the pool already keeps the cores busy. Spawned, not
        # forked: a child forked while one of the parent's OpenCV threads holds a lock hangs
        # in its first cv2 call (seen in the tests, which render in the parent first).
        pool = multiprocessing.get_context('spawn').Pool(min(workers, len(cases)),
                                                          cv2.setNumThreads, (1,))
        with pool:
            for record in track(pool.imap_unordered(_write_case, cases), **bar):
                planted.append(record)
    planted = sorted((r for r in planted if r is not None), key=lambda r: r['image'])
    planted_file = None
    if label_noise > 0:
        planted_file = root / PLANTED_FILE
        with atomic_open(planted_file, 'w', encoding='utf-8') as f:
            json.dump(dict(format=PLANTED_FORMAT, seed=seed, label_noise=label_noise,
                           errors=planted), f, indent=1)
    return {
        'root': str(root),
        'train_dir': str(root / 'train'),
        'test_dir': str(root / 'test') if test_patients else None,
        'test_labels_dir': str(root / 'test_labels') if test_labels and test_patients else None,
        'train_patients': patients,
        'test_patients': test_patients,
        'train_images': 2 * patients,
        'test_images': 2 * test_patients,
        'size': size,
        'seed': seed,
        'planted': len(planted),
        'planted_file': None if planted_file is None else str(planted_file),
    }
