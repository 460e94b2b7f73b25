"""The multi-label visualiser that the stock ``SegVisualizationHook`` calls, and ``--show-dir``."""
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import master_only
from mmseg.registry import VISUALIZERS
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from ..classes import CLASSES, PALETTE
from ..functional.labels import unpack_labels
from .overlay import draw_panels, write_png


def _as_numpy(data: torch.Tensor | np.ndarray) -> np.ndarray:
    return data.cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)


@VISUALIZERS.register_module()
class MultiLabelSegVisualizer(SegLocalVisualizer):
    """Draws multi-label samples: prediction overlay | ground-truth overlay | error map.

    ``pred_sem_seg`` is the segmentors' (C, H, W) bool map and ``gt_sem_seg`` the packed
    (1, H, W) int32 label, both at the size of the image the hook reads. Overlapping bones
    mix their colours; errors are red (false positive) and blue (false negative).

    Args:
        name: instance name.
        classes: class names; the test loop replaces them with the dataset's metainfo.
        palette: one RGB colour per class, likewise.
        out_dir: write each sample to ``out_dir/<image stem>.png`` instead of the vis
            backends (``tools/test.py --show-dir``, see ``enable_show_dir``).
        alpha: colour weight of the overlays.
        **kwargs: the rest of ``SegLocalVisualizer``'s arguments (``vis_backends``,
            ``save_dir``, ...).
    """

    def __init__(self,
                 name: str = 'visualizer',
                 classes: Sequence[str] = CLASSES,
                 palette: Sequence[Sequence[int]] = PALETTE,
                 out_dir: str | None = None,
                 alpha: float = 0.5,
                 **kwargs) -> None:
        super().__init__(name=name, alpha=alpha, **kwargs)
        # Set here, not passed up: SegLocalVisualizer hands classes and palette to
        # set_dataset_meta in swapped order.
        self.dataset_meta = dict(classes=list(classes), palette=[list(c) for c in palette])
        self.out_dir = out_dir

    def _out_file(self, name: str, data_sample: SegDataSample) -> Path:
        """``out_dir/<image stem>.png``, named after the source image when it is known."""
        img_path = data_sample.metainfo.get('img_path')
        return Path(self.out_dir) / (f'{Path(img_path).stem}.png' if img_path else f'{name}.png')

    @master_only
    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: SegDataSample | None = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: str | None = None,
                       step: int = 0,
                       with_labels: bool = True) -> None:
        """Draw a sample's panels; save to ``out_file``, else ``out_dir``, else the backends.

        Args:
            name: image identifier (the hook passes ``'{mode}_{file name}'``).
            image: (H, W, 3) uint8 RGB.
            data_sample: holds ``pred_sem_seg`` and/or ``gt_sem_seg``.
            draw_gt: draw the ground truth (and with the prediction, the error map).
            draw_pred: draw the prediction.
            show: display the picture in a window.
            wait_time: seconds the window stays, for ``show``.
            out_file: PNG path to write.
            step: global step, for the vis backends.
            with_labels: write class names on the bones.
        """
        if data_sample is None:
            raise ValueError(f'{name}: no data sample to draw')
        classes = self.dataset_meta['classes']
        pred = gt = valid = None
        if draw_pred and 'pred_sem_seg' in data_sample:
            pred = _as_numpy(data_sample.pred_sem_seg.data)
            if pred.ndim != 3 or pred.shape[0] != len(classes):
                raise ValueError(f'{name}: pred_sem_seg must be ({len(classes)}, H, W) '
                                 f'multi-label masks, got shape {pred.shape}')
            pred = pred.astype(np.bool_, copy=False)
        if draw_gt and 'gt_sem_seg' in data_sample:
            label = torch.as_tensor(data_sample.gt_sem_seg.data).cpu()[0]
            gt, valid = (t.numpy() for t in unpack_labels(label, len(classes)))
            valid = valid[0]
        drawn = draw_panels(image, pred, gt, self.dataset_meta['palette'], classes, valid,
                            self.alpha, with_labels)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is None and self.out_dir is not None:
            out_file = self._out_file(name, data_sample)
        if out_file is not None:
            write_png(out_file, drawn)
        else:
            self.add_image(name, drawn, step)


def enable_show_dir(cfg: Config, show_dir: str) -> None:
    """``tools/test.py --show-dir DIR``: one picture per test image, ``DIR/<image stem>.png``.

    As in mmseg's ``tools/test.py``, the config's ``SegVisualizationHook`` is turned on for
    every iteration; the visualiser then writes to ``show_dir`` (the stock hook passes no
    output file, and the vis backends would bury the pictures in ``vis_data/vis_image``).

    Raises:
        ValueError: the config has no visualization hook or another visualiser.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ValueError('--show-dir needs default_hooks.visualization '
                         '(SegVisualizationHook) in the config')
    visualizer = cfg.get('visualizer') or {}
    if visualizer.get('type') not in ('MultiLabelSegVisualizer', MultiLabelSegVisualizer):
        raise ValueError(f'--show-dir needs visualizer.type=MultiLabelSegVisualizer, the '
                         f'config has {visualizer.get("type")!r}')
    hook.update(draw=True, interval=1)
    visualizer['out_dir'] = show_dir
    # mmengine reuses a visualiser of the same name, and runners started within one second
    # share their default name: one named after the folder is never an older one.
    visualizer['name'] = f'show_dir:{show_dir}'
