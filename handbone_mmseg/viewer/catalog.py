"""The images a viewer shows: a data root or one image folder, listed at once, read lazily.

Listing 300 images costs a directory walk; each image's size, polygons and ground truth
are read on first use (the page asks for them, or the statistics thread reaches them) and
kept, so starting the viewer never waits for 300 JSONs. A broken JSON then marks its image
instead of stopping the viewer.

Layouts (docs/format.md):

- a data root: every ``SPLIT/DCM`` folder under it is a split, labeled by
  ``SPLIT/outputs_json`` or, where the test labels are kept apart (``tools/make_phantom.py
  --test-labels``), ``SPLIT_labels/outputs_json``;
- an image folder: every image under it (PNG, JPEG, DICOM, ...), labeled by ``--labels`` or,
  for a ``SPLIT/DCM`` folder, as above.
"""
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..evaluation.ensemble import gt_boxes
from ..functional.box_masks import BoxMasks
from ..functional.labels import Polygon
from ..functional.pose import hand_pose
from ..io.annotations import parse_annotation
from ..io.images import DATASET_SUFFIXES, IMAGE_SUFFIXES, find_images, read_image_size
from ..io.layout import check_unique_names, find_files

IMAGE_FOLDER = 'DCM'
LABEL_FOLDER = 'outputs_json'
# the suffix some file names carry (``image1661130828152_R.png``), docs/format.md
_SIDE_SUFFIX = re.compile(r'_([LR])$', re.IGNORECASE)
SIDES = {'L': 'left', 'R': 'right'}


class ViewerError(ValueError):
    """Inputs the viewer cannot show; the message names the file and the problem."""


@dataclass
class ImageEntry:
    """One image of the catalogue.

    Attributes:
        name: the file name (the submission's ``image_name``).
        path: the image file.
        patient: the first folder under the split's image folder (``ID001``), or ``''``.
        split: the split folder (``train``, ``test``) or the image folder's name.
        side: ``'left'``, ``'right'`` (file name suffix, else the labels' pose) or
            ``'unknown'``.
        label_path: its polygon JSON, or None.
    """

    name: str
    path: Path
    patient: str
    split: str
    side: str
    label_path: Path | None

    def summary(self) -> dict:
        """What the image list shows."""
        return dict(name=self.name, patient=self.patient, split=self.split, side=self.side,
                    labeled=self.label_path is not None)


def label_folder(image_folder: Path) -> Path | None:
    """The polygon folder beside ``SPLIT/DCM``: ``SPLIT/outputs_json``, else
    ``SPLIT_labels/outputs_json``; None where neither exists."""
    if image_folder.name != IMAGE_FOLDER:
        return None
    split = image_folder.parent
    for folder in (split / LABEL_FOLDER, split.parent / f'{split.name}_labels' / LABEL_FOLDER):
        if folder.is_dir():
            return folder
    return None


def _side_from_name(path: Path) -> str:
    match = _SIDE_SUFFIX.search(path.stem)
    return SIDES[match[1].upper()] if match else 'unknown'


class Catalog:
    """The images under ``root``, by file name, in sorted order.

    Args:
        root: a data root (holding ``SPLIT/DCM`` folders) or a folder of images.
        labels: the polygon folder of an image folder (default: found beside a ``DCM``
            folder, ``label_folder``).

    Raises:
        ViewerError: a missing folder, a folder without images, a label folder that does
            not exist, two images of one file name; one line naming the path.
    """

    def __init__(self, root: str | Path, labels: str | Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ViewerError(f'{self.root}: no such folder (give a data root such as '
                              'data/handbone, or a folder of images)')
        splits = sorted(p for p in self.root.glob(f'*/{IMAGE_FOLDER}') if p.is_dir())
        if labels is not None and splits:
            raise ViewerError(f'{labels}: --labels goes with a folder of images, not with the '
                              f'data root {self.root} (its labels are found per split)')
        if labels is not None and not Path(labels).is_dir():
            raise ViewerError(f'{labels}: no such label folder')
        groups = [(p, p.parent.name, label_folder(p)) for p in splits] or \
            [(self.root, self.root.name, Path(labels) if labels else label_folder(self.root))]
        self.entries: dict[str, ImageEntry] = {}
        # a split holds the data set's files; a folder of scans may hold any image
        suffixes = DATASET_SUFFIXES if splits else IMAGE_SUFFIXES
        for folder, split, label_root in groups:
            self._add(folder, split, label_root, suffixes)
        if not self.entries:
            raise ViewerError(f'{self.root}: no images ({", ".join(IMAGE_SUFFIXES)}) found')
        check_unique_names(e.path for e in self.entries.values())
        self.entries = dict(sorted(self.entries.items()))
        self._lock = threading.Lock()
        self._shapes: dict[str, tuple[int, int]] = {}
        self._polygons: dict[str, list[Polygon]] = {}

    def _add(self, folder: Path, split: str, label_root: Path | None,
             suffixes: tuple[str, ...]) -> None:
        images = find_images(folder, suffixes)
        labels = find_files(label_root, '.json', 'annotation') if label_root else {}
        for path in images:
            key = path.relative_to(folder).as_posix()[:-len(path.suffix)]
            parts = key.split('/')
            entry = ImageEntry(path.name, path, parts[0] if len(parts) > 1 else '', split,
                               _side_from_name(path), labels.get(key))
            other = self.entries.setdefault(path.name, entry)
            if other is not entry:
                check_unique_names([other.path, path])  # raises, naming both

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def get(self, name: str) -> ImageEntry:
        """The entry of image ``name``; KeyError for a name that is not in the catalogue."""
        return self.entries[name]

    def shape(self, name: str) -> tuple[int, int]:
        """(H, W) of image ``name`` from its header (PNG, DICOM), read once.

        Raises:
            AnnotationError: an unreadable header; names the file.
        """
        shape = self._shapes.get(name)
        if shape is None:
            shape = tuple(read_image_size(self.entries[name].path))
            self._shapes[name] = shape
        return shape

    def polygons(self, name: str) -> list[Polygon] | None:
        """Image ``name``'s labels (checked as the dataset checks them), None if unlabeled.

        A labeled image's pose gives its side where the file name does not.

        Raises:
            AnnotationError: a malformed JSON; names the file.
        """
        entry = self.entries[name]
        if entry.label_path is None:
            return None
        with self._lock:
            polygons = self._polygons.get(name)
        if polygons is None:
            polygons = parse_annotation(entry.label_path, self.shape(name), entry.path)
            if entry.side == 'unknown':
                pose = hand_pose(polygons)
                entry.side = pose[1] if pose else 'unknown'
            with self._lock:
                self._polygons[name] = polygons
        return polygons

    def ground_truth(self, name: str) -> BoxMasks | None:
        """(C, H, W) ground truth of image ``name`` box by box, as the scorers rasterise it
        (``evaluation.ensemble.gt_boxes``), or None if unlabeled."""
        polygons = self.polygons(name)
        if polygons is None:
            return None
        return gt_boxes(dict(polygons=polygons, ori_shape=self.shape(name)))
