"""The hand-bone X-ray dataset: image/JSON pairing, validation and patient-grouped folds."""
import warnings
from collections.abc import Sequence

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from ..classes import CLASSES, PALETTE
from ..io.annotations import AnnotationError
from ..io.images import DATASET_SUFFIXES, decode_errors
from ..io.layout import index_images
from .folds import FOLD_STRATEGIES, assign_folds, patient_folds

__all__ = ['HandBoneDataset', 'patient_folds']  # patient_folds: its old home

SPLITS = ('train', 'val', 'all')


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
        for info in data_list:
            info.update(label_map=self.label_map, reduce_zero_label=False, seg_fields=[])
        if self.check_pixels:
            data_list = self._decodable(data_list)
        if not data_list:
            raise ValueError(f'{self.data_prefix["img_path"]}: split {self.split!r} (fold '
                             f'{self.fold} of {self.n_folds}) has no usable images')
        return data_list
