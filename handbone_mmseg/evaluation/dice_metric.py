"""Multi-label Dice metric and submission writer for mmengine's evaluator."""
import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmseg.registry import METRICS

from ..functional.labels import unpack_labels
from ..functional.metrics import DICE_EPS, dice_counts, dice_from_counts, mean_dice
from ..functional.postprocess import Rule, apply_postprocess, rules_from_table
from ..functional.probs import LEVELS
from ..functional.rle import rle_encode
from ..functional.roi import paste
from ..io.atomic import atomic_open
from ..io.dice_tables import class_table, write_class_dice
from ..io.prob_dump import ProbDump, ProbDumpError, begin_dump, lock_dump, save_probs, write_index
from ..io.submission import write_submission


@METRICS.register_module()
class MultiLabelDiceMetric(BaseMetric):
    """Per-image, per-class Dice averaged over images, then classes (docs/format.md).

    Each sample leaves only (C, 3) counts (and, with ``output_dir``, its RLE strings), so
    gathering across DDP ranks stays small. Samples without ground truth (the unlabeled test
    split) are only written to the submission.

    With ``postprocess`` each predicted mask is post-processed here, before the Dice counts
    and the submission, so the tables and the CSV describe the same masks. A second-stage
    sample (``CropToClasses``: ``roi`` and ``frame_shape`` in its metainfo) is first pasted
    back into its full frame, zeros outside the crop, and every output is of the full frame:
    ``process(): [to_frame()] -> [apply_postprocess()] -> dice_counts(), rle_encode(),
    save_probs()``.

    Args:
        eps: the smoothing term of the Dice definition.
        output_dir: if set, ``submission.csv`` for every evaluated image is written there
            atomically, and with labels also ``dice_per_class.csv``.
        prob_dir: if set, each image's probabilities are saved there as they come (see
            ``handbone_mmseg.io.prob_dump``), with ``index.json`` at the end. The folder is
            locked from here (before any inference) until the index is written: a second
            run into it stops at once.
        prob_dtype: ``'uint8'`` or ``'uint16'`` quantisation of the saved probabilities.
        prob_scale: saved size as a fraction of the original, in (0, 1].
        postprocess: per-class rules ``{class name: {'largest': bool, 'min_size': int}}``
            (the ``"postprocess"`` section of a ``tools/tune_thresholds.py`` JSON); classes
            left out are not post-processed. The saved probabilities are not affected.
        covers: the classes the model predicts (a stage-2 model: e.g. the carpals); the others
            are zeroed in masks and probabilities, the dump's index records them (an
            ensemble gives the dump no vote there), and ``mDice`` and the logged table are
            over these classes only. ``dice_per_class.csv`` keeps all classes in order (what
            ``tools/ensemble.py --choose-on`` reads): the others score as empty masks.
            Default: all classes.
        fallback_dir: a stage-1 probability dump: an image whose crop has no box
            (``roi`` None: stage 1 found none of the box's classes) takes stage 1's
            probabilities of the covered classes instead of its own, thresholded at 0.5
            (``tools/test.py --roi-from`` sets it).
        collect_device: ``'cpu'`` or ``'gpu'``, for gathering results across ranks.
        prefix: prefix of the metric names in the logs.
    """

    default_prefix: str | None = None

    def __init__(self, eps: float = DICE_EPS, output_dir: str | None = None,
                 prob_dir: str | None = None, prob_dtype: str = 'uint8',
                 prob_scale: float = 1.0, postprocess: dict | None = None,
                 covers: Sequence[str] | None = None, fallback_dir: str | None = None,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not 0 < prob_scale <= 1:
            raise ValueError(f'prob_scale must lie in (0, 1], got {prob_scale}')
        if prob_dtype not in LEVELS:
            raise ValueError(f'prob_dtype must be one of {sorted(LEVELS)}, got {prob_dtype!r}')
        self.eps = eps
        self.output_dir = output_dir
        self.prob_dir = prob_dir
        self.prob_dtype = prob_dtype
        self.prob_scale = prob_scale
        self.postprocess = postprocess
        self._rules: list[Rule | None] = []
        self.covers = None if covers is None else list(covers)
        self.fallback_dir = fallback_dir
        self._fallback = None if fallback_dir is None else ProbDump(fallback_dir)
        self._covered: np.ndarray | None = None  # bool per class, set with dataset_meta
        if prob_dir is not None:
            self._lock_dump()

    def _lock_dump(self) -> None:
        """Rank 0 locks the dump for the run; every rank stops if another run holds it."""
        # the other ranks must not write a file into a dump their rank 0 could not lock
        error = [None]
        if is_main_process():
            try:
                lock_dump(self.prob_dir)
            except ProbDumpError as e:
                error = [str(e)]
        broadcast_object_list(error)
        if error[0] is not None:
            raise ProbDumpError(error[0])

    @property
    def dataset_meta(self) -> dict | None:
        """The dataset's meta information; setting it resolves ``postprocess``."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        # the class names arrive here, before the first image: a rule for an unknown class
        # stops the run now, not after the first inference
        self._dataset_meta = dataset_meta
        if self.covers is not None:
            classes = tuple(dataset_meta['classes'])
            unknown = [c for c in self.covers if c not in classes]
            if unknown:
                raise ValueError(f'test_evaluator.covers: {unknown[0]!r} is not a class of the '
                                 f'dataset')
            self._covered = np.array([c in self.covers for c in classes])
        if self.postprocess is not None:
            self._rules = rules_from_table(self.postprocess, tuple(dataset_meta['classes']),
                                           'test_evaluator.postprocess')

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Reduce each prediction to per-class counts (and RLE strings when writing)."""
        if self.postprocess is not None and self.dataset_meta is None:
            raise ValueError('postprocess needs the class names: set dataset_meta first')
        if self.prob_dir is not None and not self.results:
            # first batch of this evaluation on this rank; rank 0 holds the lock
            begin_dump(self.prob_dir, lock=is_main_process())
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].bool()
            probs = sample['seg_logits']['data'] if self.prob_dir is not None else None
            if 'frame_shape' in sample:
                pred, probs = self._to_frame(sample, pred, probs)
            if self._covered is not None:  # not in place: the sample's tensors are shared
                keep = torch.from_numpy(self._covered).to(pred.device).view(-1, 1, 1)
                pred = pred & keep
                probs = None if probs is None else probs * keep
            if any(self._rules):
                pred = torch.from_numpy(apply_postprocess(pred.cpu().numpy(), self._rules))
            result = dict(name=Path(sample['img_path']).name)
            if 'gt_sem_seg' in sample:
                if tuple(sample['gt_sem_seg']['data'].shape[-2:]) != tuple(pred.shape[-2:]):
                    raise ValueError(
                        f'{sample["img_path"]}: prediction {tuple(pred.shape[-2:])}, ground '
                        f'truth {tuple(sample["gt_sem_seg"]["data"].shape[-2:])}: a cropped '
                        "sample needs 'roi' and 'frame_shape' in PackSegInputs.meta_keys")
                gt, valid = unpack_labels(sample['gt_sem_seg']['data'][0].to(pred.device),
                                          pred.shape[0])
                result['counts'] = dice_counts(pred, gt, valid).cpu().numpy()
            if self.output_dir is not None:
                masks = pred.cpu().numpy()
                result['rles'] = [rle_encode(mask) for mask in masks]
            if self.prob_dir is not None:  # written now: results must stay small
                result['prob_entry'] = save_probs(self.prob_dir, result['name'], probs,
                                                  self.prob_dtype, self.prob_scale)
                if 'frame_shape' in sample:
                    result['prob_entry']['roi'] = sample['roi']
            self.results.append(result)

    def _to_frame(self, sample: dict, pred: torch.Tensor, probs: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A cropped sample's masks and probabilities pasted into its full frame.

        Without a box (``roi`` None) the whole image was predicted: it stays, except that
        with ``fallback_dir`` stage 1's probabilities replace it (masks at 0.5).
        """
        roi, frame = sample['roi'], tuple(sample['frame_shape'])
        if roi is None:
            if self._fallback is None:
                return pred, probs
            stage1 = self._fallback.load(Path(sample['img_path']).name).to(pred.device)
            return stage1 > 0.5, (stage1 if probs is not None else None)
        pred = torch.from_numpy(paste(pred.cpu().numpy(), roi, frame)).to(pred.device)
        if probs is not None:
            probs = torch.from_numpy(paste(probs.cpu().numpy(), roi, frame)).to(probs.device)
        return pred, probs

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        """Log the per-class table, write the outputs and return ``mDice``."""
        logger = MMLogger.get_current_instance()
        classes = tuple(self.dataset_meta['classes'])
        metrics: dict[str, float] = {}
        labeled = [r for r in results if 'counts' in r]
        if labeled:
            counts = np.stack([r['counts'] for r in labeled])
            per_class, mean = mean_dice(counts, self.eps)
            shown = np.arange(len(classes)) if self._covered is None else \
                np.flatnonzero(self._covered)
            table = class_table([classes[c] for c in shown], ['Dice'], [per_class[shown]],
                                mean=False)
            over = '' if self._covered is None else \
                f', the {len(shown)} classes the model covers'
            logger.info(f'per-class Dice over {len(labeled)} images{over}:\n'
                        f'{table.get_string()}')
            metrics['mDice'] = mean if self._covered is None else float(per_class[shown].mean())
            if self.output_dir is not None:
                self._write_dice_tables(classes, per_class, labeled)
        if self.output_dir is not None:
            path = Path(self.output_dir) / 'submission.csv'
            count = write_submission(path, ((r['name'], r['rles']) for r in results), classes)
            logger.info(f'wrote {path} ({count} images x {len(classes)} classes)')
        if self.prob_dir is not None:
            path = write_index(self.prob_dir, classes, self.prob_dtype, self.prob_scale,
                               ((r['name'], r['prob_entry']) for r in results), self.covers)
            logger.info(f'wrote {path} (probabilities of {len(results)} images)')
        return metrics

    def _write_dice_tables(self, classes: tuple[str, ...], per_class: np.ndarray,
                           labeled: list[dict]) -> None:
        """Per-class and per-image Dice as CSV, for threshold tuning and reports."""
        out = Path(self.output_dir)
        write_class_dice(out / 'dice_per_class.csv', classes, ['dice'], [per_class])
        with atomic_open(out / 'dice_per_image.csv', 'w', newline='') as f:
            writer = csv.writer(f, lineterminator='\n')
            writer.writerow(['image_name', *classes])
            for r in labeled:
                writer.writerow([r['name'], *(f'{v:.6f}' for v in
                                              dice_from_counts(r['counts'], self.eps))])
