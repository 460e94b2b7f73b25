"""COCO both ways, the format itself: our polygons and masks as COCO, a COCO file as our layout.

Annotation tools (CVAT, Label Studio, FiftyOne) read and write COCO "instances" files:
``images``, ``categories`` and ``annotations`` whose ``segmentation`` is a polygon list or a
run-length encoding (RLE, column-major, through ``pycocotools.mask``). Here:

- our polygons become COCO polygons (one annotation per polygon);
- predicted masks become compressed RLE (one annotation per bone per image, with a
  ``score``), decodable by ``pycocotools.mask.decode`` into exactly our masks;
- a COCO file comes back as our per-image JSON: polygons as they are, RLE masks traced
  into polygons (``mask_to_polygons``), whose filling gives back the same pixels.

A COCO file is untrusted input, checked whole before anything is written: categories are
matched by name, never by id or position (a category that is not one of the 29 bones is an
error); every point meets the dataset's rule (``annotations.first_outside``); an RLE mask
must hold a pixel; every ``file_name`` must stay inside the output folder.

Reading our labels and submissions into COCO needs the dataset and the scorer:
``handbone_mmseg.convert.coco``.

Coordinates: COCO puts pixel (row i, column j) at the square [j, j+1) x [i, i+1), so its
centre is (j + 0.5, i + 0.5); our points (and OpenCV) put that centre at (j, i). Polygons
move by half a pixel each way, so a round trip gives back the same points.
"""
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..classes import CLASSES
from ..functional.labels import Polygon
from .annotations import first_outside, read_json
from .atomic import atomic_open

SUPERCATEGORY = 'bone'
# our pixel centres are at integers, COCO's at half-integers
COCO_OFFSET = 0.5


class CocoError(ValueError):
    """A COCO file that cannot be used; the message starts with the file's path."""


def coco_categories(classes: Sequence[str] = CLASSES) -> list[dict]:
    """The COCO ``categories`` list: ids 1..C in class order (0 is background in COCO)."""
    return [dict(id=c + 1, name=name, supercategory=SUPERCATEGORY)
            for c, name in enumerate(classes)]


def points_to_coco(points: np.ndarray) -> list[float]:
    """(K, 2) x, y points in our convention -> a flat COCO polygon ``[x1, y1, x2, ...]``."""
    return (np.asarray(points, np.float64) + COCO_OFFSET).ravel().tolist()


def coco_to_points(polygon: Sequence[float]) -> np.ndarray:
    """A flat COCO polygon -> (K, 2) float64 x, y points in our convention."""
    return np.asarray(polygon, np.float64).reshape(-1, 2) - COCO_OFFSET


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of a 2-D mask: ``{'size': [h, w], 'counts': str}`` (JSON-ready).

    Shape:
        mask: (H, W), non-zero is foreground.
    """
    if mask.ndim != 2:
        raise ValueError(f'mask_to_rle expects a 2-D mask, got shape {mask.shape}')
    rle = mask_utils.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    return dict(size=[int(v) for v in rle['size']], counts=rle['counts'].decode('ascii'))


def segmentation_to_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO segmentation: polygons, uncompressed or compressed RLE."""
    if isinstance(segmentation, dict) and isinstance(segmentation.get('counts'), (str, bytes)):
        counts = segmentation['counts']  # compressed: pycocotools decodes it as it is
        rle = dict(size=list(segmentation['size']),
                   counts=counts.encode('ascii') if isinstance(counts, str) else counts)
    else:  # polygons, or CVAT's uncompressed RLE (a list of run lengths)
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
    if tuple(rle['size']) != (height, width):
        raise ValueError(f'RLE of size {list(rle["size"])} on a {height}x{width} image')
    return mask_utils.decode(rle).astype(bool)


def mask_to_polygons(mask: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Outer outlines of a mask's 8-connected parts, as our (K, 2) points.

    Filling each outline (``rasterize_polygons``) gives back the part's pixels: the outline
    runs through the centres of its boundary pixels, and filling includes the edges. A part
    of one or two pixels gets its points repeated up to the three a polygon needs. Holes
    cannot be expressed in our schema (a bone has none) and are filled.

    Returns:
        ``(polygons, holes)``: one float64 array per part and the number of holes filled.
    """
    m = np.ascontiguousarray(mask != 0, dtype=np.uint8)
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    polygons, holes = [], 0
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0] if contours else []):
        if parent >= 0:  # the inner outline of a hole
            holes += 1
            continue
        points = contour[:, 0, :].astype(np.float64)
        if len(points) < 3:
            points = np.concatenate([points, np.repeat(points[-1:], 3 - len(points), 0)])
        polygons.append(points)
    return polygons, holes


class CocoWriter:
    """Builds a COCO instances file one image at a time.

    Args:
        classes: class names, the categories in order.
        description: ``info.description``.
    """

    def __init__(self, classes: Sequence[str] = CLASSES, description: str = '') -> None:
        self.classes = tuple(classes)
        self.info = dict(description=description)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add_image(self, file_name: str, height: int, width: int, **extra: object) -> int:
        """Add an image (``extra`` keys such as ``pixel_spacing`` are kept); its id."""
        image_id = len(self.images) + 1
        self.images.append(dict(id=image_id, file_name=file_name, height=int(height),
                                width=int(width), **extra))
        return image_id

    def _add(self, image_id: int, class_index: int, segmentation: list | dict,
             rle: dict, **extra: object) -> None:
        bbox = mask_utils.toBbox(rle).tolist()
        self.annotations.append(dict(
            id=len(self.annotations) + 1, image_id=image_id, category_id=class_index + 1,
            segmentation=segmentation, area=float(mask_utils.area(rle)),
            bbox=[float(v) for v in bbox], iscrowd=0, **extra))

    def add_polygon(self, image_id: int, class_index: int, points: np.ndarray) -> None:
        """Add one of our polygons, (K, 2) x, y, as a COCO polygon annotation."""
        image = self.images[image_id - 1]
        polygon = points_to_coco(points)
        rle = mask_utils.frPyObjects([polygon], image['height'], image['width'])[0]
        self._add(image_id, class_index, [polygon], rle)

    def add_mask(self, image_id: int, class_index: int, mask: np.ndarray,
                 score: float | None = None) -> bool:
        """Add a mask as one RLE annotation (with ``score`` if given); False if empty."""
        if not mask.any():
            return False
        rle = mask_to_rle(mask)
        extra = {} if score is None else dict(score=float(score))
        self._add(image_id, class_index,
                  rle, dict(rle, counts=rle['counts'].encode('ascii')), **extra)
        return True

    def to_dict(self) -> dict:
        return dict(info=self.info, images=self.images, annotations=self.annotations,
                    categories=coco_categories(self.classes))

    def write(self, path: str | Path) -> Path:
        """Write the JSON atomically; returns ``path``."""
        with atomic_open(path, 'w', encoding='utf-8') as f:
            json.dump(self.to_dict(), f)
        return Path(path)


@dataclass
class CocoImage:
    """One image of a COCO file, in our terms.

    Attributes:
        image_id: its ``id`` in the COCO file.
        file_name: as the COCO file names it (may hold folders: ``ID001/image1.png``).
        height, width: its size.
        polygons: ``(class index, (K, 2) points)`` in our convention, in file order.
        holes: holes filled when RLE masks were traced into polygons.
    """

    image_id: int
    file_name: str
    height: int
    width: int
    polygons: list[Polygon] = field(default_factory=list)
    holes: int = 0


def _field(item: object, key: str, kinds: type | tuple, where: str) -> object:
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise CocoError(f'{where}: missing or malformed "{key}"')
    return value


def category_classes(categories: list, path: str | Path,
                     classes: Sequence[str] = CLASSES) -> dict[int, int]:
    """COCO category id -> our class index, matched by name.

    Raises:
        CocoError: a category whose name is not one of ``classes``; names the file.
    """
    index = {name: c for c, name in enumerate(classes)}
    mapping = {}
    for i, category in enumerate(categories):
        name = _field(category, 'name', str, f'{path}: categories[{i}]')
        cat_id = _field(category, 'id', int, f'{path}: categories[{i}]')
        if name not in index:
            raise CocoError(f'{path}: category {name!r} (id {cat_id}) is not one of the '
                            f'{len(classes)} bone classes ({classes[0]}, ..., '
                            f'{classes[-1]}); names must match exactly')
        mapping[cat_id] = index[name]
    return mapping


def read_coco(path: str | Path, classes: Sequence[str] = CLASSES) -> list[CocoImage]:
    """Read and check a COCO instances file with bone categories.

    Polygon annotations keep their points (half a pixel moved, see the module docstring);
    RLE annotations (CVAT exports masks so) are traced into polygons.

    Returns:
        One ``CocoImage`` per image, in file order; images without annotations included.

    Raises:
        CocoError: unreadable JSON, missing keys, a category that is not a bone, an
            annotation of an unknown image or category, a polygon of fewer than 3 points or
            with a point outside the image, an RLE mask without a pixel; one line naming
            the file and the annotation (its id, its image's id and file_name).
    """
    path = Path(path)
    data = read_json(path, CocoError, 'COCO file')
    if not isinstance(data, dict):
        raise CocoError(f'{path}: not a COCO instances file (expected a JSON object)')
    for key in ('images', 'annotations', 'categories'):
        _field(data, key, list, f'{path}')
    mapping = category_classes(data['categories'], path, classes)
    images: dict[int, CocoImage] = {}
    for i, image in enumerate(data['images']):
        where = f'{path}: images[{i}]'
        image_id = _field(image, 'id', int, where)
        if image_id in images:
            raise CocoError(f'{where}: image id {image_id} appears twice')
        size = _field(image, 'height', int, where), _field(image, 'width', int, where)
        if min(size) < 1:
            raise CocoError(f'{where}: image {image_id} is {size[1]}x{size[0]}')
        images[image_id] = CocoImage(image_id, _field(image, 'file_name', str, where), *size)
    for i, ann in enumerate(data['annotations']):
        where = f'{path}: annotations[{i}]'
        image = images.get(_field(ann, 'image_id', int, where))
        if image is None:
            raise CocoError(f'{where}: image_id {ann["image_id"]} is not in "images"')
        where = (f'{path}: annotation {ann.get("id")} (annotations[{i}]) of image '
                 f'{image.image_id} ({image.file_name!r})')
        cat_id = _field(ann, 'category_id', int, where)
        if cat_id not in mapping:
            raise CocoError(f'{where}: category_id {cat_id} is not in "categories"')
        cls = mapping[cat_id]
        segmentation = _field(ann, 'segmentation', (list, dict), where)
        if isinstance(segmentation, list):
            for polygon in segmentation:
                image.polygons.append((cls, _polygon_points(polygon, image, classes[cls],
                                                            where)))
            continue
        try:
            mask = segmentation_to_mask(segmentation, image.height, image.width)
        except (TypeError, ValueError, KeyError) as e:
            raise CocoError(f'{where}: malformed RLE segmentation ({e})') from None
        if not mask.any():  # a bone without a pixel cannot become a polygon
            raise CocoError(f'{where}: {classes[cls]} RLE mask is empty (no pixel set); '
                            'remove the annotation or draw the bone')
        parts, holes = mask_to_polygons(mask)
        image.polygons += [(cls, points) for points in parts]
        image.holes += holes
    return list(images.values())


def _polygon_points(polygon: object, image: CocoImage, label: str, where: str) -> np.ndarray:
    """A COCO polygon as our points, held to the dataset's rule for points.

    COCO's frame begins half a pixel before ours, so a vertex on its left or top edge (0)
    comes out at -0.5: that half pixel, and only it, goes onto our edge. Anything else
    outside ``[0, W] x [0, H]`` is refused, as ``parse_annotation`` refuses it.
    """
    if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
        raise CocoError(f'{where}: a polygon needs at least 3 x, y pairs')
    try:
        points = coco_to_points(polygon)
    except (TypeError, ValueError, OverflowError):
        points = None
    if points is None or not np.isfinite(points).all() or \
            any(isinstance(v, bool) for v in polygon):
        raise CocoError(f'{where}: {label} polygon holds values that are not finite numbers')
    points[(points < 0) & (points >= -COCO_OFFSET)] = 0
    k = first_outside(points, (image.height, image.width))
    if k is not None:
        x, y = polygon[2 * k:2 * k + 2]
        raise CocoError(f'{where}: {label} point ({x:g}, {y:g}) lies outside the '
                        f'{image.width}x{image.height} image')
    return points


def annotation_json(image: CocoImage, classes: Sequence[str] = CLASSES) -> dict:
    """Our per-image annotation JSON (docs/format.md) for a COCO image, points written as
    plain numbers (``read_coco`` has checked them)."""
    annotations = []
    for k, (cls, points) in enumerate(image.polygons):
        annotations.append(dict(id=str(k + 1), type='poly_seg', attributes={},
                                label=classes[cls],
                                points=[[_number(x), _number(y)] for x, y in points]))
    return dict(annotations=annotations, attributes={}, file_id='',
                filename=Path(image.file_name).name, parent_path='', last_modifier_id='',
                metadata=dict(height=image.height, width=image.width), last_workers={})


def _number(value: float) -> int | float:
    """Whole numbers as ints, so converted files look like the originals."""
    return int(value) if float(value).is_integer() else float(value)


def output_paths(images: Sequence[CocoImage], root: str | Path, source: str | Path,
                 suffix: str | None = None) -> list[Path]:
    """Where each image's file goes: ``root/<file_name>`` (with ``suffix``, if given).

    A ``file_name`` is untrusted: an absolute one, or one with ``..``, could put the file
    anywhere, so every path must stay inside ``root``; checked for all images first.

    Raises:
        CocoError: an absolute, empty or climbing ``file_name``, or two images of one output
            file; names ``source`` and the image's id and file_name.
    """
    root = Path(root)
    paths: dict[Path, CocoImage] = {}
    for image in images:
        name = PurePosixPath(image.file_name)  # COCO separates folders with '/'
        if name.is_absolute() or '..' in name.parts or not name.name:
            raise CocoError(f'{source}: image {image.image_id} has file_name '
                            f'{image.file_name!r}, which would be written outside {root}; '
                            'file names must be relative paths without ".."')
        path = root / (name.with_suffix(suffix) if suffix is not None else name)
        other = paths.setdefault(path, image)
        if other is not image:
            raise CocoError(f'{source}: images {other.image_id} ({other.file_name!r}) and '
                            f'{image.image_id} ({image.file_name!r}) would both write {path}')
    return list(paths)


def write_coco_images(images: Sequence[CocoImage], ann_root: str | Path,
                      classes: Sequence[str] = CLASSES,
                      source: str | Path = 'COCO file') -> list[Path]:
    """Write each image's JSON to ``ann_root/<file_name without suffix>.json``, atomically;
    every path is checked (``output_paths``) before the first is written.

    Returns:
        The files written, in order.
    """
    written = output_paths(images, ann_root, source, '.json')
    for image, out in zip(images, written):
        with atomic_open(out, 'w', encoding='utf-8') as f:
            json.dump(annotation_json(image, classes), f)
    return written
