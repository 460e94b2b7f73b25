"""What each image of a data set is and what its labels say, read once and in parallel: the
input of the data report (``audit.report``) and of the anatomy rules (``audit.rules``).

Images and JSONs are found, paired and checked by the loader training uses
(``io.layout.index_images``): the same files are refused with the same messages. The
pairing and the data-wide checks (a JSON without its image, two images of one name) run
first in this process without reading a JSON; then the patients are dealt to worker
processes, each reading its patients' headers and JSONs and measuring them (nnU-Net's
per-case function in a pool). Nothing is written anywhere.
"""
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..classes import CLASS_INDEX, CLASSES
from ..evaluation.ensemble import default_workers
from ..functional.anatomy import FOREARM, outside_distance, polygon_area
from ..functional.box_masks import Box, BoxMasks
from ..functional.labels import Polygon
from ..functional.pose import centroid, hand_pose
from ..io.annotations import read_png_header
from ..io.dicom import is_dicom, read_dicom_header
from ..io.layout import index_images
from ..utils.progress import track

SPLITS = ('train', 'test')
_FOREARM = {CLASS_INDEX[name] for name in FOREARM}
# patients per task: small enough for an even spread and a moving progress bar
_PATIENTS_PER_TASK = 8


@dataclass
class ImageFacts:
    """One image and, when labeled, per class what its annotations hold.

    Per-class arrays are in ``CLASSES`` order; an absent class has 0 polygons, 0 area, an
    all-zero box and NaN centroid and hull distance.

    Attributes:
        name, patient, split, img_path: which image (``split`` is ``'train'`` or ``'test'``).
        height, width: its size.
        bit_depth: bits per sample (PNG header, DICOM ``BitsStored``), None for other formats.
        significant_bits: a PNG's ``sBIT``, or None.
        labeled: whether it has a JSON.
        polygons: (C,) polygons per class.
        points: (C,) points per class, all polygons together.
        area: (C,) pixels of the class's filled polygons (as training rasterises them).
        polygon_area: (C,) the polygons' enclosed areas summed (shoelace, pixels): the
            area free of rasterisation steps, which the rules compare across sizes.
        piece_areas: per class with two or more polygons, each polygon's area (pixels).
        boxes: (C, 4) ``x0, y0, x1, y1`` of the filled pixels (x1, y1 exclusive).
        centroids: (C, 2) area-weighted centroid x, y of the polygons.
        outside: (C,) signed distance (pixels) from the centroid to the convex hull of every
            other class's points but the forearm's: positive outside the rest of the hand.
            (Radius and ulna run off the image: their outline says nothing about the hand,
            and a shifted radius would put the ulna "outside".)
        overlaps: ``{(i, j): pixels}`` for every pair i < j of classes that share pixels.
        angle, side: ``functional.pose.hand_pose`` (None where a bone it needs is absent).
        labels: the ``(class index, points)`` polygons as the loader parsed them (labeled).
    """

    name: str
    patient: str
    split: str
    img_path: str
    height: int
    width: int
    bit_depth: int | None
    significant_bits: int | None
    labeled: bool
    polygons: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASSES), np.int64))
    points: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASSES), np.int64))
    area: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASSES), np.int64))
    polygon_area: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASSES)))
    piece_areas: dict[int, list[float]] = field(default_factory=dict)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((len(CLASSES), 4), np.int64))
    centroids: np.ndarray = field(
        default_factory=lambda: np.full((len(CLASSES), 2), np.nan))
    outside: np.ndarray = field(default_factory=lambda: np.full(len(CLASSES), np.nan))
    overlaps: dict[tuple[int, int], int] = field(default_factory=dict)
    angle: float | None = None
    side: str | None = None
    labels: list[Polygon] = field(default_factory=list, repr=False)

    @property
    def present(self) -> np.ndarray:
        """(C,) bool: the class has at least one polygon."""
        return self.polygons > 0


def _bits(path: str) -> tuple[int | None, int | None]:
    """(bits per sample, sBIT) from the header of a PNG or DICOM; (None, None) otherwise."""
    if Path(path).suffix.lower() == '.png':
        header = read_png_header(path)
        return header.bit_depth, header.significant_bits
    if is_dicom(path):
        return read_dicom_header(path)[1]['bits_stored'], None
    return None, None


def measure_labels(facts: ImageFacts, polygons: Sequence[Polygon]) -> None:
    """Fill ``facts``' per-class fields from one image's polygons (in place)."""
    facts.labels = list(polygons)
    shape = (facts.height, facts.width)
    by_class: list[list[np.ndarray]] = [[] for _ in CLASSES]
    for cls, points in polygons:
        by_class[cls].append(np.asarray(points, np.float64))
    masks = BoxMasks.from_polygons(polygons, shape, len(CLASSES))
    facts.area = masks.sums()
    for c, (pieces, (y0, y1, x0, x1)) in enumerate(zip(by_class, masks.boxes)):
        if not pieces:
            continue
        facts.polygons[c] = len(pieces)
        facts.points[c] = sum(len(p) for p in pieces)
        areas = [polygon_area(p) for p in pieces]
        facts.polygon_area[c] = sum(areas)
        if len(pieces) > 1:
            facts.piece_areas[c] = areas
        facts.boxes[c] = x0, y0, x1, y1
        facts.centroids[c] = centroid(polygons, [CLASSES[c]])
    for c, pieces in enumerate(by_class):
        if pieces:
            others = [p for k, group in enumerate(by_class)
                      if k != c and k not in _FOREARM for p in group]
            facts.outside[c] = outside_distance(facts.centroids[c], others)
    for i in range(len(CLASSES)):
        for j in range(i + 1, len(CLASSES)):
            shared = overlap_count(masks.crops[i], masks.boxes[i], masks.crops[j],
                                   masks.boxes[j])
            if shared:
                facts.overlaps[(i, j)] = shared
    pose = hand_pose(polygons)
    if pose is not None:
        facts.angle, facts.side = round(pose[0], 3), pose[1]


def overlap_count(first: np.ndarray, first_box: Box, second: np.ndarray,
                  second_box: Box) -> int:
    """Pixels set in both of two bool crops placed at their boxes (``y0, y1, x0, x1``),
    counted where the boxes meet."""
    a, b = first_box, second_box
    y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    if y0 >= y1 or x0 >= x1:
        return 0
    return int(np.count_nonzero(first[y0 - a[0]:y1 - a[0], x0 - a[2]:x1 - a[2]]
                                & second[y0 - b[0]:y1 - b[0], x0 - b[2]:x1 - b[2]]))


def image_facts(info: dict, split: str) -> ImageFacts:
    """The facts of one ``index_images`` entry (labeled when it has ``polygons``)."""
    bit_depth, significant = _bits(info['img_path'])
    height, width = info['ori_shape']
    facts = ImageFacts(info['name'], info['patient'], split, info['img_path'], int(height),
                       int(width), bit_depth, significant, 'polygons' in info)
    if facts.labeled:
        measure_labels(facts, info['polygons'])
    return facts


def label_infos(facts: Sequence[ImageFacts]) -> dict[str, dict]:
    """The labeled images as the scorer's entries (name -> ``polygons``, ``ori_shape``,
    ``img_path``, ``patient``), without reading a JSON again."""
    return {f.name: dict(polygons=f.labels, ori_shape=(f.height, f.width),
                         img_path=f.img_path, patient=f.patient, name=f.name)
            for f in facts if f.labeled}


@dataclass(frozen=True)
class Source:
    """One split's folders: images and, labeled, their JSONs (``ann_root`` None: test)."""

    split: str
    img_root: str
    ann_root: str | None
    data_root: str


def _task(task: tuple[Source, frozenset[str]]) -> list[ImageFacts]:
    """The facts of some patients of one split: the per-case unit of the pool."""
    source, patients = task
    entries = index_images(source.img_root, source.ann_root, data_root=source.data_root,
                           select=lambda _: set(patients))
    return [image_facts(info, source.split) for info in entries]


def list_patients(source: Source) -> list[str]:
    """Pair and check a split's files as training does, without reading a JSON: the
    patient of every image, sorted.

    Raises:
        FileNotFoundError: a missing or empty folder.
        AnnotationError: a JSON without its image, two images of one file name.
    """
    found: list[str] = []

    def note(patients: list[str]) -> set[str]:
        found.extend(sorted(patients))
        return set()  # read nothing now

    index_images(source.img_root, source.ann_root, data_root=source.data_root, select=note)
    return found


def collect_facts(sources: Sequence[Source], workers: int | None = 0,
                  progress: bool = False) -> list[ImageFacts]:
    """Read every image header and JSON of ``sources`` once, in ``workers`` processes.

    Args:
        sources: the splits to read; each is paired and checked (``list_patients``) before
            any JSON is read, so a missing folder or an orphan JSON stops at once.
        workers: processes (0 or 1: this one; None: up to 4 cores, by the image count,
            ``evaluation.ensemble.default_workers``).
        progress: a bar on a terminal.

    Returns:
        One ``ImageFacts`` per image, ordered by split, patient and name.

    Raises:
        AnnotationError, FileNotFoundError: the first bad file, named (as training says it).
    """
    tasks, images = [], 0
    for source in sources:
        of_images = list_patients(source)
        images += len(of_images)
        patients = sorted(set(of_images))
        tasks += [(source, frozenset(patients[k:k + _PATIENTS_PER_TASK]))
                  for k in range(0, len(patients), _PATIENTS_PER_TASK)]
    if workers is None:
        workers = default_workers(images)
    bar = dict(total=len(tasks), description='read labels', enabled=None if progress else False)
    facts: list[ImageFacts] = []
    if workers <= 1:
        for task in track(tasks, **bar):
            facts += _task(task)
    else:
        # spawn: a forked child of a process holding torch's threads can hang (a notebook,
        # the tests); one OpenCV thread each, the pool keeps the cores busy
        context = multiprocessing.get_context('spawn')
        with context.Pool(min(workers, len(tasks)), cv2.setNumThreads, (1, )) as pool:
            for part in track(pool.imap_unordered(_task, tasks), **bar):
                facts += part
    order = {split: k for k, split in enumerate(SPLITS)}
    return sorted(facts, key=lambda f: (order.get(f.split, len(order)), f.patient, f.name))


def data_sources(data_root: str | Path, img_dir: str = 'train/DCM',
                 ann_dir: str = 'train/outputs_json',
                 test_dir: str | None = 'test/DCM') -> list[Source]:
    """The labeled split and, where its folder exists, the test split of a data root.

    Raises:
        FileNotFoundError: no data root, or no labeled image or JSON folder in it.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f'{root}: data root not found')
    for sub, what in ((img_dir, 'image'), (ann_dir, 'annotation')):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f'{root / sub}: {what} folder not found '
                                    f'(data_root={str(root)!r})')
    sources = [Source('train', str(root / img_dir), str(root / ann_dir), str(root))]
    if test_dir and (root / test_dir).is_dir():
        sources.append(Source('test', str(root / test_dir), None, str(root)))
    return sources
