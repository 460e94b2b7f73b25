"""``HandBoneInferencer``: a trained model on any X-rays, shaped like mmseg's ``MMSegInferencer``.

::

    from handbone_mmseg.apis import HandBoneInferencer

    inferencer = HandBoneInferencer('configs/hrnet_w48_handbone.py', 'best_mDice.pth',
                                    tta=True, thresholds='thresholds.json')
    result = inferencer(['scan.dcm', 'hand.png'], return_vis=True)
    result['predictions'][0].masks          # (29, H, W) bool at the image's own size
    for prediction in inferencer.iter_predict('folder/', batch_size=2):
        ...                                 # one image at a time: memory stays flat

What runs is what ``tools/test.py`` runs: the config's ``test_pipeline`` (or, with ``tta``,
its ``tta_pipeline``) as written, the multi-label segmentor (or ``MultiLabelTTAModel`` around
it), per-class thresholds inside the model and the post-processing rules of the thresholds
JSON after it. Only the loader learns where an image comes from: ``LoadXrayFromFile`` reads
PNG and DICOM files and takes arrays.

.. code:: text

 iter_predict(): to_inputs() -> DataLoader(config pipeline, pseudo_collate; workers as the
     config's test_dataloader) -> model.test_step() (probabilities at ori_shape, thresholds)
     -> apply_postprocess() -> HandBonePrediction
 __call__(): list(iter_predict()) [+ draw() for each image]
"""
import copy
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from torch import nn

from ..classes import CLASSES, NUM_CLASSES, PALETTE
from ..functional.postprocess import Rule, apply_postprocess
from ..functional.thresholds import check_thresholds
from ..io.images import expand_inputs, image_metadata, read_image
from ..io.thresholds_json import load_postprocess, load_thresholds
from ..register import register_all_modules
from ..runtime.checkpoint import check_checkpoint_classes, check_checkpoint_fits
from ..visualization.overlay import draw_panels, write_png
from .config import load_config

InputType = str | os.PathLike | np.ndarray
LOADERS = ('LoadXrayFromFile', 'LoadImageFromFile')


@dataclass
class InferenceInput:
    """One image to predict: a file, or an array the caller holds.

    Attributes:
        name: the image's name in outputs (a file's base name; ``array_0000`` ...).
        path: the file, or None for an array.
        array: (H, W) grey or (H, W, 3) BGR uint8, or None for a file.
    """

    name: str
    path: Path | None = None
    array: np.ndarray | None = field(default=None, repr=False)


@dataclass
class HandBonePrediction:
    """The prediction of one image, at its original size.

    Attributes:
        name: the image's name (a file's base name: the submission's ``image_name``).
        img_path: the file, or None for an array input.
        probs: (C, H, W) float32 per-class probabilities (TTA: averaged over the views).
        masks: (C, H, W) bool, ``probs > threshold`` per class, then post-processed.
        metadata: ``ori_shape`` (H, W) and ``pixel_spacing`` ([row, column] mm from a
            DICOM header, else None); DICOM also ``photometric`` and ``bits_stored``.
    """

    name: str
    img_path: str | None
    probs: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)
    metadata: dict = field(default_factory=dict)


def to_inputs(inputs: InputType | Iterable[InputType],
              names: Sequence[str] | None = None) -> list[InferenceInput]:
    """Paths, folders (searched recursively) and arrays as a flat list of inputs.

    Args:
        inputs: one item or a list; a folder stands for the images under it.
        names: names for the array inputs, in order (default ``array_0000``, ...).

    Raises:
        FileNotFoundError: a path that does not exist or a folder without images.
    """
    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
        inputs = [inputs]
    items: list[InferenceInput] = []
    arrays = 0
    for item in inputs:
        if isinstance(item, np.ndarray):
            name = names[arrays] if names is not None else f'array_{arrays:04d}'
            items.append(InferenceInput(name, array=item))
            arrays += 1
        else:
            items += [InferenceInput(p.name, path=p) for p in expand_inputs(item)]
    if names is not None and len(names) != arrays:
        raise ValueError(f'{len(names)} names for {arrays} array inputs')
    return items


class _InputDataset(torch.utils.data.Dataset):
    """The inputs through the config's pipeline, for a ``DataLoader``.

    An input that fails to load comes back as its exception, raised again in the main
    process: a worker's own re-raise would wrap the one-line message in a traceback.
    """

    def __init__(self, items: Sequence[InferenceInput], pipeline: Compose) -> None:
        self.items = items
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict | Exception:
        item = self.items[index]
        try:
            if item.path is not None:
                return self.pipeline(dict(img_path=str(item.path)))
            return self.pipeline(dict(img_path=None, img=item.array))
        except (ValueError, OSError) as e:  # the loaders' errors name the file
            return e


def _collate(batch: list[dict | Exception]) -> dict | Exception:
    """``pseudo_collate``, or the first failure of the batch."""
    failed = next((b for b in batch if isinstance(b, Exception)), None)
    return failed if failed is not None else pseudo_collate(batch)


def inference_pipeline(cfg: Config, tta: bool = False, source: str = 'config') -> Compose:
    """The config's test (or TTA) pipeline, as written, starting with ``LoadXrayFromFile``.

    A stock ``LoadImageFromFile`` at the start becomes ``LoadXrayFromFile`` (its subclass,
    same arguments), which also reads DICOM and takes arrays.

    Raises:
        ValueError: no such pipeline, or one that does not start by loading the image.
    """
    if tta:
        pipeline = cfg.get('tta_pipeline')
        if not pipeline or not cfg.get('tta_model'):
            raise ValueError(f'{source}: TTA needs tta_model and tta_pipeline in the config')
    else:
        pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline')
        if not pipeline:
            raise ValueError(f'{source}: no test_dataloader.dataset.pipeline in the config')
    pipeline = copy.deepcopy(list(pipeline))
    if pipeline[0].get('type') not in LOADERS:
        raise ValueError(f'{source}: the {"TTA" if tta else "test"} pipeline starts with '
                         f'{pipeline[0].get("type")!r}, expected one of {LOADERS}')
    pipeline[0] = dict(pipeline[0], type='LoadXrayFromFile')
    return Compose(pipeline)


def build_model(cfg: Config, checkpoint: str | os.PathLike, device: str,
                tta: bool = False) -> nn.Module:
    """The config's segmentor with the checkpoint's weights (and TTA around it), in eval mode.

    Raises:
        ValueError: the checkpoint does not fit the model (another class count or
            architecture, grey against colour input): mmengine would only warn and predict
            from random layers.
    """
    checkpoint = os.fspath(checkpoint)
    if not os.path.isfile(checkpoint):
        raise ValueError(f'{checkpoint}: checkpoint not found')
    check_checkpoint_classes(checkpoint, NUM_CLASSES)
    model = MODELS.build(cfg.model)
    check_checkpoint_fits(checkpoint, model)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='current')
    if not str(device).startswith('cuda'):
        model = revert_sync_batchnorm(model)  # as MMSegInferencer: SyncBN needs a GPU group
    if tta:
        tta_cfg = dict(cfg.tta_model)
        tta_cfg['module'] = model  # built already: its weights are loaded and checked
        model = MODELS.build(tta_cfg)
    return model.to(device).eval()


class HandBoneInferencer:
    """Predict the 29 bones of X-rays given as files (PNG, DICOM), folders or arrays.

    Args:
        config: a config file, or a ``Config`` already loaded (``load_config``).
        checkpoint: the trained weights; checked against the model before loading.
        tta: the config's ``tta_pipeline`` and ``tta_model`` (mean probability over the
            views), as ``tools/test.py --tta``.
        thresholds: one value for every class, one per class, or a thresholds JSON of
            ``tools/tune_thresholds.py`` (its ``"postprocess"`` rules then apply too).
        device: ``'cuda'``, ``'cuda:1'``, ``'cpu'``; default a GPU when there is one.
        num_workers: loading processes; default the config's ``test_dataloader``'s.
        cfg_options: overrides of a config file, as ``--cfg-options``
            (``{'grayscale': True}`` ...).

    Raises:
        ValueError: a config without the pipeline asked for, bad thresholds, or a
            checkpoint that does not fit the model; the message names the file.
    """

    def __init__(self, config: str | os.PathLike | Config, checkpoint: str | os.PathLike,
                 tta: bool = False,
                 thresholds: float | Sequence[float] | str | os.PathLike | None = None,
                 device: str | None = None, num_workers: int | None = None,
                 cfg_options: dict | None = None) -> None:
        source = str(config) if not isinstance(config, Config) else \
            (config.filename or 'config')
        if isinstance(config, Config) and cfg_options:
            raise ValueError(f'{source}: cfg_options apply to a config file; merge them '
                             'into a loaded Config with load_config')
        register_all_modules()
        cfg = copy.deepcopy(config) if isinstance(config, Config) else \
            load_config(config, cfg_options)
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        self.rules: list[Rule | None] = [None] * NUM_CLASSES
        if isinstance(thresholds, (str, os.PathLike)):
            cfg.model.threshold = load_thresholds(thresholds).tolist()
            self.rules = load_postprocess(thresholds)
        elif thresholds is not None:
            values = np.broadcast_to(np.asarray(thresholds, np.float64), (NUM_CLASSES, ))
            cfg.model.threshold = check_thresholds(values).tolist()
        self.cfg = cfg
        self.tta = tta
        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.pipeline = inference_pipeline(cfg, tta, source)
        self.num_workers = num_workers if num_workers is not None else \
            int(cfg.get('test_dataloader', {}).get('num_workers', 0))
        self.model = build_model(cfg, checkpoint, self.device, tta)

    def iter_predict(self, inputs: InputType | Iterable[InputType] | Sequence[InferenceInput],
                     batch_size: int = 1) -> Iterator[HandBonePrediction]:
        """Predict image by image; only one batch is held at a time.

        Args:
            inputs: a path, a folder, an array, a list of these, or ``to_inputs``'s list.
            batch_size: images per forward pass (they are padded to the largest in it).

        Yields:
            One ``HandBonePrediction`` per image, in input order.
        """
        if batch_size < 1:
            raise ValueError(f'batch_size must be at least 1, got {batch_size}')
        items = inputs if isinstance(inputs, list) and inputs and \
            all(isinstance(i, InferenceInput) for i in inputs) else to_inputs(inputs)
        loader = torch.utils.data.DataLoader(
            _InputDataset(items, self.pipeline), batch_size=batch_size, shuffle=False,
            num_workers=self.num_workers, collate_fn=_collate)
        position = 0
        for data in loader:
            if isinstance(data, Exception):
                raise data
            with torch.no_grad():
                samples = self.model.test_step(data)
            for sample in samples:
                item = items[position]
                position += 1
                yield self._prediction(item, sample)
            # drop this batch's full-size maps before the next forward pass, which would
            # otherwise run with both in memory
            del samples, sample

    def _prediction(self, item: InferenceInput, sample) -> HandBonePrediction:
        masks = sample.pred_sem_seg.data.cpu().numpy()
        if any(self.rules):
            masks = apply_postprocess(masks, self.rules)
        probs = sample.seg_logits.data.float().cpu().numpy()
        metadata = dict(ori_shape=tuple(int(v) for v in probs.shape[1:]),
                        **image_metadata(item.path))
        return HandBonePrediction(item.name, None if item.path is None else str(item.path),
                                  probs, masks, metadata)

    def __call__(self, inputs: InputType | Iterable[InputType], batch_size: int = 1,
                 return_vis: bool = False, out_dir: str | os.PathLike | None = None,
                 names: Sequence[str] | None = None) -> dict:
        """Predict every image and keep all results (``iter_predict`` streams instead).

        Args:
            inputs: a path, a folder, an array, or a list of these.
            batch_size: images per forward pass.
            return_vis: also return each image's overlay (``draw``).
            out_dir: write each overlay to ``out_dir/<image stem>.png``.
            names: names of the array inputs.

        Returns:
            ``{'predictions': [HandBonePrediction, ...], 'visualization': [RGB array, ...]
            or None}``, in input order.
        """
        items = to_inputs(inputs, names)
        predictions, pictures = [], []
        for item, prediction in zip(items, self.iter_predict(items, batch_size)):
            predictions.append(prediction)
            if return_vis or out_dir is not None:
                picture = self.draw(prediction, image=item.array)
                if out_dir is not None:
                    write_png(Path(out_dir) / f'{Path(prediction.name).stem}.png', picture)
                if return_vis:
                    pictures.append(picture)
        return dict(predictions=predictions, visualization=pictures if return_vis else None)

    def draw(self, prediction: HandBonePrediction, image: np.ndarray | None = None,
             alpha: float = 0.5, with_labels: bool = True,
             max_size: int | None = None) -> np.ndarray:
        """The image with its predicted bones in the palette colours (the visualiser's
        overlay; overlapping bones mix their colours).

        Args:
            prediction: from ``iter_predict`` or ``__call__``.
            image: the input array ((H, W) grey or (H, W, 3) BGR); default the file read
                again.
            alpha: colour weight.
            with_labels: write the class names on the bones.
            max_size: shrink so the longer side is at most this.

        Returns:
            (h, w, 3) uint8 RGB.
        """
        if image is None:
            if prediction.img_path is None:
                raise ValueError(f'{prediction.name}: an array input: pass its image')
            image, _ = read_image(prediction.img_path)
        elif image.ndim == 2 or image.shape[2] == 1:
            image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        return draw_panels(rgb, prediction.masks, None, PALETTE, CLASSES, alpha=alpha,
                           with_labels=with_labels, max_size=max_size)
