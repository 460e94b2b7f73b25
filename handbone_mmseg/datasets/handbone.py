"""The hand-bone X-ray dataset: image/JSON pairing, validation, patient-grouped folds and
the annotations a person marked as wrong."""
import os.path as osp
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from ..classes import CLASS_INDEX, CLASSES, IGNORE_BIT, PALETTE
from ..io.annotations import AnnotationError
from ..io.images import DATASET_SUFFIXES, decode_errors, find_images
from ..io.layout import EXCLUDED_LABELS, index_images
from .folds import FOLD_STRATEGIES, assign_folds, patient_folds

# patient_folds: its old home
__all__ = ['HandBoneDataset', 'patient_folds', 'read_excluded_labels']

SPLITS = ('train', 'val', 'all')
WHOLE_IMAGE = '*'                        # ``IMAGE *`` leaves the whole image out


def read_excluded_labels(path: str | Path, images: Collection[str]) -> dict[str, set[str]]:
    """Read a list of annotations marked as wrong: one ``IMAGE CLASS`` per line.

    ``IMAGE`` is the image's file name (as in the submission and ``audit.csv``), ``CLASS``
    one of the 29 class names, or ``*`` for the whole image (a bone that is missing from the
    label has no pixels to leave out: only leaving the image out removes its wrong
    "background"). ``#`` starts a comment; blank lines are skipped.

    Args:
        path: the list file.
        images: the file names of the images under the data root (any folder: the list
            may name training images and a labeled test set's).

    Returns:
        Image name -> the class names (or ``'*'``) to leave out.

    Raises:
        AnnotationError: ``FILE:LINE: problem`` for a line that is not two words, an unknown
            image or an unknown class; ``FILE: cannot read ...`` for an unreadable file.
    """
    try:
        text = Path(path).read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f'{path}: cannot read the excluded labels ({e})') from None
    found: dict[str, set[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split('#', 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise AnnotationError(f'{path}:{number}: expected "IMAGE CLASS" (or "IMAGE *"), '
                                  f'got {raw.strip()!r}')
        image, cls = words
        if image not in images:
            raise AnnotationError(f'{path}:{number}: unknown image {image!r}: no image of this '
                                  'file name in the data set')
        if cls != WHOLE_IMAGE and cls not in CLASS_INDEX:
            raise AnnotationError(f'{path}:{number}: unknown class {cls!r} (one of the 29 '
                                  f'class names, e.g. {CLASSES[0]!r}, or {WHOLE_IMAGE!r})')
        found.setdefault(image, set()).add(cls)
    return found


@DATASETS.register_module()
class HandBoneDataset(BaseSegDataset):
    """Hand-bone X-rays with polygon JSONs, as laid out in docs/format.md.

    Images under ``data_prefix['img_path']`` pair with JSONs under
    ``data_prefix['seg_map_path']`` by relative path without extension. Without a
    ``seg_map_path`` the split is unlabeled (test images only). Every JSON is read and
    checked here, so bad data fails before training starts, naming the file.

    Args:
        split: ``'train'`` (every fold but ``fold``), ``'val'`` (fold ``fold``) or ``'all'``.
        n_folds: number of patient-grouped folds; a patient is the first folder under the
            image root (``IDxxx``).
        fold: the validation fold, ``0 <= fold < n_folds``.
        fold_seed: seed of the patient shuffle that defines the folds.
        fold_strategy: ``'patient'`` (patients dealt round-robin) or
            ``'patient_stratified'`` (scikit-learn's ``StratifiedGroupKFold``: patients kept
            whole, wrist angle and hand side balanced across folds; every JSON of the
            labeled images is read to tell them): see ``datasets.folds``.
        skip_invalid: warn and drop unusable labeled images (missing JSON, bad JSON, PNG
            header or DICOM, an image that does not decode) instead of raising. A JSON with
            an empty ``annotations`` list is one of them, not 29 empty masks: the dataset
            refuses what it would have to guess at (see ``io.parse_annotation``). A JSON
            without its image always raises.
        check_pixels: decode every image of the split when the dataset is built. Default
            (None): only for ``split='val'``, which mmengine builds before the first
            training iteration; a truncated validation image would otherwise stop the run at
            its first validation, hours later (a bad training image fails in the first
            epoch anyway). It costs one decode per image, spread over up to 8 threads:
            about 0.2 s per 2048x2048 phantom PNG on one core of a 2-core machine, so 60
            validation images take about 6 s on its two cores. An unchanged file that
            decoded once in this process is not decoded again (``io.decode_errors``): the
            tools build each split before mmengine's runner builds it (``apis.check_data``).
        img_suffix: image file extension, or several: PNG and DICOM (``.dcm``) by default,
            side by side in one tree (any case). Two images of one file name (without
            extension), in one folder or in two patient folders, are an error in every
            split: the submission names an image by its file name alone, and probability
            dumps and pictures by its stem.
        seg_map_suffix: annotation file extension.
        data_prefix: ``img_path`` and optional ``seg_map_path``, relative to ``data_root``.
        excluded_labels: a list of annotations a person marked as wrong
            (``read_excluded_labels``: ``IMAGE CLASS`` per line, e.g. from
            ``tools/audit_labels.py``), relative to ``data_root``. Default: the data root's
            ``excluded_labels.txt`` where it exists; None: no exclusion. In every labeled
            split (train and validation) an excluded class's polygons leave the label and
            their pixels become ignored (``IGNORE_VALUE``, as padding): neither that class
            nor any other learns from the doubtful region, and the validation Dice does not
            count it. Dropping the polygon alone would teach "no bone here" where a bone is;
            ignoring only its class would still teach its neighbours that the region is
            theirs or background. ``IMAGE *`` leaves the whole image out. The dataset logs
            how many it left out; a line naming an unknown image or class stops it.
    """

    METAINFO = dict(classes=CLASSES, palette=[list(c) for c in PALETTE])

    def __init__(self,
                 split: str = 'all',
                 n_folds: int = 5,
                 fold: int = 0,
                 fold_seed: int = 0,
                 fold_strategy: str = 'patient',
                 skip_invalid: bool = False,
                 check_pixels: bool | None = None,
                 img_suffix: str | Sequence[str] = DATASET_SUFFIXES,
                 seg_map_suffix: str = '.json',
                 data_prefix: dict = dict(img_path='DCM', seg_map_path='outputs_json'),
                 excluded_labels: str | None = EXCLUDED_LABELS,
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if split != 'all' and not (n_folds >= 2 and 0 <= fold < n_folds):
            raise ValueError(f'need n_folds >= 2 and 0 <= fold < n_folds, got n_folds='
                             f'{n_folds}, fold={fold}')
        if fold_strategy not in FOLD_STRATEGIES:
            raise ValueError(f'fold_strategy must be one of {FOLD_STRATEGIES}, got '
                             f'{fold_strategy!r}')
        self.split, self.n_folds, self.fold, self.fold_seed = split, n_folds, fold, fold_seed
        self.fold_strategy = fold_strategy
        self.skip_invalid = skip_invalid
        self.check_pixels = split == 'val' if check_pixels is None else check_pixels
        self.excluded_labels = excluded_labels
        # what the exclusion list left out of this split: annotations (image, class), their
        # polygons, and whole images (``IMAGE *``)
        self.excluded = dict(annotations=0, polygons=0, images=0)
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         data_prefix=data_prefix, **kwargs)

    def _reject(self, message: str) -> None:
        if not self.skip_invalid:
            raise AnnotationError(message)
        warnings.warn(f'skipping: {message}')

    def _decodable(self, data_list: list[dict]) -> list[dict]:
        """The entries whose image decodes as the pipeline will decode it, in order."""
        problems = decode_errors([info['img_path'] for info in data_list])
        kept = []
        for info, message in zip(data_list, problems):
            if message is None:
                kept.append(info)
            else:
                self._reject(message)
        return kept

    def _exclusion_file(self) -> str | None:
        """The exclusion list in use, or None (the default name absent, or switched off)."""
        if self.excluded_labels is None or not self.data_prefix.get('seg_map_path'):
            return None
        default = self.excluded_labels == EXCLUDED_LABELS
        if default and not self.data_root:
            return None  # no data root to look in
        path = self.excluded_labels if osp.isabs(self.excluded_labels) else \
            osp.join(self.data_root or '', self.excluded_labels)
        if osp.isfile(path):
            return path
        if not default:
            raise FileNotFoundError(f'{path}: excluded labels file not found')
        return None

    def _exclude(self, data_list: list[dict]) -> list[dict]:
        """Leave out the annotations of the exclusion list: the images marked ``*``, and per
        excluded class its polygons, which come back as ``(IGNORE_BIT, points)`` entries
        that ``LoadMultiLabelAnnotations`` turns into ignored pixels."""
        path = self._exclusion_file()
        if path is None:
            return data_list
        # the list names images of any folder of the data root (the training images, a
        # labeled test set): a name is wrong only if no folder holds it
        suffixes = (self.img_suffix,) if isinstance(self.img_suffix, str) else self.img_suffix
        images = {p.name for p in find_images(self.data_root or osp.dirname(path), suffixes)}
        excluded = read_excluded_labels(path, images)
        kept, counts = [], dict(annotations=0, polygons=0, images=0)
        for info in data_list:
            marked = excluded.get(info['name'])
            if not marked:
                kept.append(info)
                continue
            if WHOLE_IMAGE in marked:
                # out of training only: a validation fold keeps every image, so that the
                # out-of-fold predictions of the folds cover the whole labeled set
                if self.split != 'val':
                    counts['images'] += 1
                    continue
                marked = marked - {WHOLE_IMAGE}
                if not marked:
                    kept.append(info)
                    continue
            for cls in sorted(marked):
                if not any(c == CLASS_INDEX[cls] for c, _ in info['polygons']):
                    raise AnnotationError(f'{path}: {info["name"]} has no {cls} polygon to leave '
                                          f'out ({info["seg_map_path"]}); to drop an image '
                                          f'whose {cls} is missing, list "{info["name"]} *"')
            wrong = {CLASS_INDEX[cls] for cls in marked}
            dropped = [(IGNORE_BIT, p) for c, p in info['polygons'] if c in wrong]
            info['polygons'] = [(c, p) for c, p in info['polygons'] if c not in wrong] + dropped
            info['excluded_classes'] = sorted(wrong)  # CropToClasses boxes their pixels too
            counts['annotations'] += len(wrong)
            counts['polygons'] += len(dropped)
            kept.append(info)
        self.excluded = counts
        print_log(f'{path}: {self.split} split: annotations left out: {counts["annotations"]} '
                  f'({counts["polygons"]} polygons, their pixels ignored); whole images left '
                  f'out: {counts["images"]}; lines listed: '
                  f'{sum(len(v) for v in excluded.values())}', logger='current')
        return kept

    def load_data_list(self) -> list[dict]:
        """Pair, check and split the files; labeled entries carry their parsed polygons."""
        def check_patients(patients: list[str]) -> None:
            n_patients = len(set(patients))
            if self.n_folds > n_patients:
                raise ValueError(f'{self.data_prefix["img_path"]}: n_folds={self.n_folds} '
                                 f'but only {n_patients} patients; every fold needs a patient')

        def in_split(folds: dict[str, int]) -> set[str]:
            return {p for p, fold in folds.items()
                    if (fold == self.fold) == (self.split == 'val')}

        def select(patients: list[str]) -> set[str]:
            if self.split == 'all':
                return set(patients)
            check_patients(patients)
            return in_split(patient_folds(patients, self.n_folds, self.fold_seed))

        # stratified folds need every labeled image's pose, so every JSON, before splitting
        stratified = self.split != 'all' and self.fold_strategy != 'patient'
        data_list = index_images(self.data_prefix['img_path'],
                                 self.data_prefix.get('seg_map_path') or None,
                                 self.img_suffix, self.seg_map_suffix, self.data_root,
                                 None if stratified else select, self._reject)
        if stratified:
            check_patients([info['patient'] for info in data_list])
            keep = in_split(assign_folds(data_list, self.n_folds, self.fold_strategy,
                                         self.fold_seed))
            data_list = [info for info in data_list if info['patient'] in keep]
        # after the folds: an exclusion must not move an image to another fold
        data_list = self._exclude(data_list)
        for info in data_list:
            info.update(label_map=self.label_map, reduce_zero_label=False, seg_fields=[])
        if self.check_pixels:
            data_list = self._decodable(data_list)
        if not data_list:
            raise ValueError(f'{self.data_prefix["img_path"]}: split {self.split!r} (fold '
                             f'{self.fold} of {self.n_folds}) has no usable images')
        return data_list
