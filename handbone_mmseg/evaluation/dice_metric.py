"""Multi-label Dice metric and submission writer for mmengine's evaluator."""
import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmseg.registry import METRICS

from ..functional.labels import unpack_labels
from ..functional.metrics import DICE_EPS, dice_counts, dice_from_counts, mean_dice
from ..functional.postprocess import Rule, apply_postprocess, rules_from_table
from ..functional.probs import LEVELS
from ..functional.rle import rle_encode
from ..io.atomic import atomic_open
from ..io.dice_tables import class_table, write_class_dice
from ..io.prob_dump import begin_dump, save_probs, write_index
from ..io.submission import write_submission


@METRICS.register_module()
class MultiLabelDiceMetric(BaseMetric):
    """Per-image, per-class Dice averaged over images, then classes (HANDBONE_FORMAT.md).

    Each sample leaves only (C, 3) counts (and, with ``output_dir``, its RLE strings), so
    gathering across DDP ranks stays small. Samples without ground truth (the unlabeled test
    split) are only written to the submission.

    With ``postprocess`` each predicted mask is post-processed here, before the Dice counts
    and the submission, so the tables and the CSV describe the same masks:
    ``process(): [apply_postprocess()] -> dice_counts(), rle_encode(), save_probs()``.

    Args:
        eps: the smoothing term of the Dice definition.
        output_dir: if set, ``submission.csv`` for every evaluated image is written there
            atomically, and with labels also ``dice_per_class.csv``.
        prob_dir: if set, each image's probabilities are saved there as they come (see
            ``handbone_mmseg.io.prob_dump``), with ``index.json`` at the end.
        prob_dtype: ``'uint8'`` or ``'uint16'`` quantisation of the saved probabilities.
        prob_scale: saved size as a fraction of the original, in (0, 1].
        postprocess: per-class rules ``{class name: {'largest': bool, 'min_size': int}}``
            (the ``"postprocess"`` section of a ``tools/tune_thresholds.py`` JSON); classes
            left out are not post-processed. The saved probabilities are not affected.
        collect_device: ``'cpu'`` or ``'gpu'``, for gathering results across ranks.
        prefix: prefix of the metric names in the logs.
    """

    default_prefix: str | None = None

    def __init__(self, eps: float = DICE_EPS, output_dir: str | None = None,
                 prob_dir: str | None = None, prob_dtype: str = 'uint8',
                 prob_scale: float = 1.0, postprocess: dict | None = None,
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

    @property
    def dataset_meta(self) -> dict | None:
        """The dataset's meta information; setting it resolves ``postprocess``."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        # the class names arrive here, before the first image: a rule for an unknown class
        # stops the run now, not after the first inference
        self._dataset_meta = dataset_meta
        if self.postprocess is not None:
            self._rules = rules_from_table(self.postprocess, tuple(dataset_meta['classes']),
                                           'test_evaluator.postprocess')

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Reduce each prediction to per-class counts (and RLE strings when writing)."""
        if self.postprocess is not None and self.dataset_meta is None:
            raise ValueError('postprocess needs the class names: set dataset_meta first')
        if self.prob_dir is not None and not self.results:
            begin_dump(self.prob_dir)  # first batch of this evaluation on this rank
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].bool()
            if any(self._rules):
                pred = torch.from_numpy(apply_postprocess(pred.cpu().numpy(), self._rules))
            result = dict(name=Path(sample['img_path']).name)
            if 'gt_sem_seg' in sample:
                gt, valid = unpack_labels(sample['gt_sem_seg']['data'][0].to(pred.device),
                                          pred.shape[0])
                result['counts'] = dice_counts(pred, gt, valid).cpu().numpy()
            if self.output_dir is not None:
                masks = pred.cpu().numpy()
                result['rles'] = [rle_encode(mask) for mask in masks]
            if self.prob_dir is not None:  # written now: results must stay small
                result['prob_entry'] = save_probs(self.prob_dir, result['name'],
                                                  sample['seg_logits']['data'],
                                                  self.prob_dtype, self.prob_scale)
            self.results.append(result)

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        """Log the per-class table, write the outputs and return ``mDice``."""
        logger = MMLogger.get_current_instance()
        classes = tuple(self.dataset_meta['classes'])
        metrics: dict[str, float] = {}
        labeled = [r for r in results if 'counts' in r]
        if labeled:
            counts = np.stack([r['counts'] for r in labeled])
            per_class, mean = mean_dice(counts, self.eps)
            table = class_table(classes, ['Dice'], [per_class], mean=False)
            logger.info(f'per-class Dice over {len(labeled)} images:\n{table.get_string()}')
            metrics['mDice'] = mean
            if self.output_dir is not None:
                self._write_dice_tables(classes, per_class, labeled)
        if self.output_dir is not None:
            path = Path(self.output_dir) / 'submission.csv'
            count = write_submission(path, ((r['name'], r['rles']) for r in results), classes)
            logger.info(f'wrote {path} ({count} images x {len(classes)} classes)')
        if self.prob_dir is not None:
            path = write_index(self.prob_dir, classes, self.prob_dtype, self.prob_scale,
                               ((r['name'], r['prob_entry']) for r in results))
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
