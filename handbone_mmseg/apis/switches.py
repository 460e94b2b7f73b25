"""Config switches that rewrite parts a config file built when it was parsed.

A base config builds its pipelines and model from its top-level variables when it is parsed,
before any child config or ``--cfg-options`` can set them: ``crop_size = (1536, 1536)`` would
change the variable and nothing that uses it. ``apply_switches`` writes the variables into
what uses them (pipelines, data preprocessor, model, optimizer wrapper, visualizer). It is
idempotent: ``load_config`` applies it, and ``HandBoneRunner.from_cfg`` applies it again for
configs that reach the runner another way (mmseg's ``tools/train.py``, ``mim train``) or that
were changed in between (``tools/test.py --tta`` wraps the segmentor in ``model.module``).

A config whose variables agree with what it built comes out unchanged. The variables win: a
size written into a pipeline by hand (a child config's literal ``RandomCrop(crop_size=...)``)
is replaced by the variable's value, so sizes are set through the variables only;
``load_config`` refuses a ``--cfg-options`` key that would set such a size directly.
"""
from collections.abc import MutableMapping, Sequence

# mmcv loads BGR; RGB2Gray leaves one float channel, exact for grey stored as 3 channels.
GREY_TRANSFORM = dict(type='RGB2Gray', out_channels=1, weights=(0.114, 0.587, 0.299))
LOADERS = ('LoadXrayFromFile', 'LoadImageFromFile')
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# The top-level variables apply_switches reads (load_config accepts them as overrides even
# in a config that does not declare them).
SWITCH_NAMES = ('use_wandb', 'grayscale', 'crop_size', 'train_scale', 'test_scale',
                'tta_ratios', 'full_resolution', 'accumulative_counts', 'grad_checkpointing',
                'roi_classes', 'roi_margin', 'roi_jitter', 'amp_dtype')
AMP_DTYPES = ('auto', 'float16', 'bfloat16')
# Decoders that concatenate encoder features of strides 2..32 with upsampled ones: a
# training crop that does not divide by 32 gives mismatched shapes.
UNET_HEADS = ('UNetPlusPlusHead', 'UNetHead', 'MAnetHead')
UNET_STRIDE = 32
CHECKPOINTING_BACKBONES = ('HandBoneTIMMBackbone',)
# Integers with their least value: the fold variables (top level and in each dataloader's
# dataset) and the dataloaders' sizes. A string from --cfg-options (fold=one) would otherwise
# reach a comparison in the dataset or the DataLoader and end in a bare TypeError.
FOLD_INTEGERS = (('n_folds', 2), ('fold', 0))
LOADER_INTEGERS = (('batch_size', 1), ('num_workers', 0))


def apply_switches(cfg: MutableMapping) -> None:
    """Apply the plugin's top-level switches where the config sets them, in place.

    - ``crop_size``: every pipeline's ``RandomCrop``, ``model.data_preprocessor.size``, and
      the sliding windows under ``full_resolution``;
    - ``train_scale``: ``RandomResize.scale`` in the training pipelines;
    - ``test_scale``: ``Resize.scale`` in the other pipelines (``test_pipeline``, the val
      and test dataloaders'), and with ``tta_ratios`` the resizes of ``TestTimeAug``
      (``tta_pipeline``): ``round(test_scale x ratio)`` each (see ``_tta_resizes``);
    - ``full_resolution``: see ``set_full_resolution``;
    - ``accumulative_counts``: ``optim_wrapper.accumulative_counts``;
    - ``grad_checkpointing``: ``HandBoneTIMMBackbone.grad_checkpointing`` and the UNet
      heads' ``with_cp`` (``True`` is refused for a model that has neither);
    - ``roi_classes`` (with ``roi_margin``, ``roi_jitter``): a second-stage model on the box
      around these bones, see ``set_roi``;
    - ``amp_dtype``: ``optim_wrapper.dtype`` of an ``AmpOptimWrapper``, see ``set_amp_dtype``;
    - ``use_wandb``, ``grayscale``: ``add_wandb_backend``, ``make_grayscale``.

    Only transforms of the named types are touched; a switch the config lacks changes
    nothing.

    Args:
        cfg: a ``Config`` or ``ConfigDict``; applying the switches twice changes nothing.

    Raises:
        ValueError: a switch's value is not valid (one line naming the key and the rule).
    """
    check_switches(cfg)
    if cfg.get('roi_classes') is not None:
        set_roi(cfg)
    apply_sizes(cfg)
    if 'accumulative_counts' in cfg and 'optim_wrapper' in cfg:
        cfg['optim_wrapper']['accumulative_counts'] = cfg['accumulative_counts']
    if 'grad_checkpointing' in cfg:
        set_grad_checkpointing(cfg, cfg['grad_checkpointing'])
    if 'amp_dtype' in cfg:
        set_amp_dtype(cfg)
    if cfg.get('use_wandb'):
        add_wandb_backend(cfg)
    if cfg.get('grayscale'):
        make_grayscale(cfg)


def _source(cfg: MutableMapping) -> str:
    """The config's file, for messages."""
    return getattr(cfg, 'filename', None) or 'the config'


def segmentor(cfg: MutableMapping) -> MutableMapping:
    """``cfg.model``, or the segmentor a test-time-augmentation model wraps (``--tta``)."""
    model = cfg.get('model') or {}
    if 'backbone' not in model and 'module' in model:
        model = model['module']
    return model


def _heads(model: MutableMapping) -> list:
    head = model.get('decode_head') or []
    return list(head) if isinstance(head, (list, tuple)) else [head]


def _is_pair(value: object) -> bool:
    return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def check_switches(cfg: MutableMapping) -> None:
    """Refuse a switch value that would fail later, or silently do something else.

    Also the integers the dataset and the dataloaders compare: ``n_folds`` (>= 2) and
    ``fold`` (>= 0, < ``n_folds``) at the top level and in each dataloader's dataset, and
    each dataloader's ``batch_size`` (>= 1) and ``num_workers`` (>= 0).

    Raises:
        ValueError: one line naming the key, e.g. ``crop_size must be two positive integers
            (height, width), got 1536``.
    """
    for key, order in (('crop_size', 'height, width'), ('train_scale', "width, height: "
                       "mmcv's Resize"), ('test_scale', "width, height: mmcv's Resize")):
        if key in cfg and not _is_pair(cfg[key]):
            raise ValueError(f'{key} must be two positive integers ({order}), '
                             f'got {cfg[key]!r}')
    unet = [h['type'] for h in _heads(segmentor(cfg)) if h.get('type') in UNET_HEADS]
    if unet and 'crop_size' in cfg and any(v % UNET_STRIDE for v in cfg['crop_size']):
        raise ValueError(f'crop_size must be a multiple of {UNET_STRIDE} for the {unet[0]} '
                         f'of {_source(cfg)} (its encoder strides), '
                         f'got {tuple(cfg["crop_size"])}')
    ratios = cfg.get('tta_ratios', [1.0])
    if not (isinstance(ratios, Sequence) and not isinstance(ratios, str) and ratios and all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in ratios)):
        raise ValueError(f'tta_ratios must be a list of positive numbers, got {ratios!r}')
    counts = cfg.get('accumulative_counts', 1)
    if isinstance(counts, bool) or not isinstance(counts, int) or counts < 1:
        raise ValueError(f'accumulative_counts must be a positive integer, got {counts!r}')
    if cfg.get('amp_dtype', 'auto') not in AMP_DTYPES:
        raise ValueError(f'amp_dtype must be one of {", ".join(AMP_DTYPES)}, '
                         f'got {cfg["amp_dtype"]!r}')
    for key in ('full_resolution', 'grad_checkpointing'):
        if not isinstance(cfg.get(key, False), bool):
            raise ValueError(f'{key} must be True or False, got {cfg[key]!r}')
    _check_fold_integers(cfg, '')
    for loader in DATALOADERS:
        settings = cfg.get(loader) or {}
        for key, low in LOADER_INTEGERS:
            if key in settings:
                _check_integer(f'{loader}.{key}', settings[key], low)
        if isinstance(settings.get('dataset'), MutableMapping):
            _check_fold_integers(settings['dataset'], f'{loader}.dataset.')
    if cfg.get('roi_classes') is not None:
        from ..functional.roi import DEFAULT_MARGIN, check_jitter, check_margin, class_indices
        class_indices(cfg['roi_classes'], 'roi_classes')
        check_margin(cfg.get('roi_margin', DEFAULT_MARGIN), 'roi_margin')
        check_jitter(cfg.get('roi_jitter', 0.0), 'roi_jitter')


def _check_integer(key: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f'{key} must be an integer >= {low}, got {value!r}')


def _check_fold_integers(node: MutableMapping, prefix: str) -> None:
    """``n_folds`` and ``fold`` of ``node`` (the config or a dataset), where it has them."""
    for key, low in FOLD_INTEGERS:
        if key in node:
            _check_integer(prefix + key, node[key], low)
    if 'fold' in node and 'n_folds' in node and node['fold'] >= node['n_folds']:
        raise ValueError(f'{prefix}fold must be less than n_folds ({node["n_folds"]}), '
                         f'got {node["fold"]}')
    strategies = ('patient', 'patient_stratified')  # datasets.folds.FOLD_STRATEGIES
    if node.get('fold_strategy', 'patient') not in strategies:
        raise ValueError(f'{prefix}fold_strategy must be one of {strategies}, got '
                         f'{node["fold_strategy"]!r}')


def _pipelines(cfg: MutableMapping) -> list[tuple[bool, list]]:
    """Every pipeline of the config, each with whether it is a training pipeline."""
    found = [(key == 'train_pipeline', cfg[key]) for key in cfg
             if key.endswith('_pipeline') and isinstance(cfg[key], list)]
    for loader in DATALOADERS:
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        if isinstance(dataset.get('pipeline'), list):
            found.append((loader == 'train_dataloader', dataset['pipeline']))
    return found


def apply_sizes(cfg: MutableMapping) -> None:
    """``crop_size``, ``train_scale``, ``test_scale``, ``tta_ratios``, ``full_resolution``."""
    crop = tuple(cfg['crop_size']) if 'crop_size' in cfg else None
    train_scale = tuple(cfg['train_scale']) if 'train_scale' in cfg else None
    full = cfg.get('full_resolution', False)
    for training, pipeline in _pipelines(cfg):
        if full and not training:  # windows over the original image
            pipeline[:] = [t for t in pipeline if t['type'] != 'Resize']
        for transform in pipeline:
            kind = transform['type']
            if kind == 'RandomCrop' and crop is not None:
                transform['crop_size'] = crop
            elif kind == 'RandomResize' and training and train_scale is not None:
                transform['scale'] = train_scale
            elif kind == 'Resize' and not training and 'test_scale' in cfg \
                    and 'scale' in transform:
                transform['scale'] = tuple(cfg['test_scale'])
            elif kind == 'TestTimeAug':
                transform['transforms'] = [
                    _tta_resizes(cfg, group) if _is_resize_group(group) else group
                    for group in transform['transforms']]
    model = segmentor(cfg)
    preprocessor = model.get('data_preprocessor') or {}
    if crop is not None and 'size' in preprocessor:
        preprocessor['size'] = crop
    if full:
        set_full_resolution(model, crop)


def _transforms(pipeline: list) -> list:
    """The transforms of a pipeline, those inside ``TestTimeAug``'s groups included."""
    found = []
    for transform in pipeline:
        found.append(transform)
        if transform['type'] == 'TestTimeAug':
            found.extend(t for group in transform['transforms'] for t in group)
    return found


def set_roi(cfg: MutableMapping) -> None:
    """Make the config a second-stage model of the box around ``roi_classes``.

    Every pipeline gets ``CropToClasses(classes=roi_classes, margin=roi_margin)`` right after
    loading (before any resize: the crop keeps the source resolution; the training pipelines
    with ``jitter=roi_jitter``). In the test-side pipelines the ground truth is loaded in the
    full frame (``LoadFrameAnnotations`` for ``LoadMultiLabelAnnotations``) and
    ``PackSegInputs`` carries the crop's box, so ``MultiLabelDiceMetric`` pastes predictions
    back and scores Dice in the full frame over ``covers=roi_classes`` (the evaluators').
    A pipeline that has the crop already gets the values (and keeps a ``boxes`` file).
    """
    from ..functional.roi import DEFAULT_MARGIN, ROI_META_KEYS
    classes = list(cfg['roi_classes'])
    margin = float(cfg.get('roi_margin', DEFAULT_MARGIN))
    jitter = float(cfg.get('roi_jitter', 0.0))
    for training, pipeline in _pipelines(cfg):
        crop = dict(classes=classes, margin=margin, jitter=jitter if training else 0.0)
        existing = [t for t in pipeline if t['type'] == 'CropToClasses']
        for transform in existing:
            transform.update(crop)
        if not existing:
            at = next((i + 1 for i, t in enumerate(pipeline) if t['type'] in LOADERS), 0)
            pipeline.insert(at, dict(type='CropToClasses', **crop))
        if training:
            continue
        for transform in _transforms(pipeline):
            if transform['type'] == 'LoadMultiLabelAnnotations':
                transform.clear()
                transform['type'] = 'LoadFrameAnnotations'
            elif transform['type'] == 'PackSegInputs':
                transform['meta_keys'] = ROI_META_KEYS
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg.get(key)
        if isinstance(evaluator, MutableMapping) and \
                evaluator.get('type') == 'MultiLabelDiceMetric':
            evaluator['covers'] = classes


def _is_resize_group(group: object) -> bool:
    return isinstance(group, list) and bool(group) and all(
        isinstance(t, MutableMapping) and t.get('type') == 'Resize' for t in group)


def _tta_resizes(cfg: MutableMapping, group: list) -> list:
    """``TestTimeAug``'s resizes, one per ``tta_ratios`` entry.

    ``round(test_scale x ratio)``; relative to the source size (``scale_factor=ratio``) under
    ``full_resolution`` or where the group was made so by hand (``scale_factor`` resizes).
    The first resize's other keys (``keep_ratio`` ...) are kept.
    """
    ratios = cfg.get('tta_ratios')
    relative = cfg.get('full_resolution', False) or 'scale_factor' in group[0]
    if ratios is None or (not relative and 'test_scale' not in cfg):
        return group
    rest = {k: v for k, v in group[0].items() if k not in ('type', 'scale', 'scale_factor')}
    if relative:
        return [{'type': 'Resize', 'scale_factor': r, **rest} for r in ratios]
    width, height = cfg['test_scale']
    return [{'type': 'Resize', 'scale': (round(width * r), round(height * r)), **rest}
            for r in ratios]


def set_full_resolution(model: MutableMapping, crop_size: tuple[int, int] | None) -> None:
    """Sliding windows of the current ``crop_size`` over the original image, Gaussian-blended.

    ``model.test_cfg`` becomes ``dict(mode='slide', crop_size=crop_size, stride=crop_size // 2,
    blend='gaussian', sigma_scale=1/8, batch_windows=1)`` (nnU-Net's scheme, see
    ``MultiLabelMixin``); ``sigma_scale`` and ``batch_windows`` keep the values the config
    gives them (``--cfg-options model.test_cfg.batch_windows=4``), any other key is replaced.
    (``apply_sizes`` drops the test pipelines' ``Resize`` and makes the test-time resizes
    relative to the source size.)
    """
    if crop_size is None:
        raise ValueError('full_resolution=True needs crop_size: the windows are the '
                         'training crops')
    old = model.get('test_cfg') or {}
    model['test_cfg'] = dict(mode='slide', crop_size=crop_size,
                             stride=(crop_size[0] // 2, crop_size[1] // 2), blend='gaussian',
                             sigma_scale=old.get('sigma_scale', 1 / 8),
                             batch_windows=old.get('batch_windows', 1))


def set_grad_checkpointing(cfg: MutableMapping, enabled: bool) -> None:
    """``grad_checkpointing`` into a ``HandBoneTIMMBackbone`` and the UNet heads' ``with_cp``.

    Other backbones and heads are left as they are; ``True`` for a model that has none of
    these is refused rather than ignored (mmengine's ``activation_checkpointing``, a list of
    module names, reaches any model).
    """
    model = segmentor(cfg)
    places = [h for h in _heads(model) if h.get('type') in UNET_HEADS]
    for head in places:
        head['with_cp'] = enabled
    backbone = model.get('backbone') or {}
    if backbone.get('type') in CHECKPOINTING_BACKBONES:
        backbone['grad_checkpointing'] = enabled
        places.append(backbone)
    if enabled and not places:
        raise ValueError(
            f'grad_checkpointing=True: {_source(cfg)} has no {"/".join(UNET_HEADS)} head or '
            f'{"/".join(CHECKPOINTING_BACKBONES)} backbone (backbone '
            f'{backbone.get("type")!r}); set activation_checkpointing=[module names] instead')


def native_bf16() -> bool:
    """Whether this machine's GPU computes bfloat16 natively (compute capability >= 8.0)."""
    import torch
    # not torch.cuda.is_bf16_supported(): it also answers True where bf16 is emulated (V100)
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def set_amp_dtype(cfg: MutableMapping) -> None:
    """``amp_dtype`` into ``optim_wrapper.dtype`` of an ``AmpOptimWrapper`` that has none.

    ``'auto'``: ``'bfloat16'`` where the GPU computes it natively (``native_bf16``),
    ``'float16'`` elsewhere; resolved in the process that trains, on its own GPU. A dtype that
    the config or ``--cfg-options optim_wrapper.dtype=...`` sets is kept. Other wrappers (the
    CPU configs' ``OptimWrapper``) are left as they are.
    """
    wrapper = cfg.get('optim_wrapper') or {}
    if wrapper.get('type') != 'AmpOptimWrapper' or wrapper.get('dtype') is not None:
        return
    choice = cfg['amp_dtype']
    if choice == 'auto':
        choice = 'bfloat16' if native_bf16() else 'float16'
    wrapper['dtype'] = choice


def add_wandb_backend(cfg: MutableMapping) -> None:
    """Log to Weights & Biases as well, through mmengine's ``WandbVisBackend``.

    ``wandb_init_kwargs`` (project, name, tags ...) go to ``wandb.init``. The subclass
    ``HandBoneWandbVisBackend`` uploads the package's code instead of the working directory.
    A visualizer that has a W&B backend already (named in the config, or added before) is
    left as it is.
    """
    backends = list(cfg['visualizer'].get('vis_backends', []))
    if not any(b['type'].endswith('WandbVisBackend') for b in backends):
        # a copy: the backend adds its save dir to the kwargs it is given
        init_kwargs = dict(cfg.get('wandb_init_kwargs', {}))
        cfg['visualizer']['vis_backends'] = [
            *backends, dict(type='HandBoneWandbVisBackend', init_kwargs=init_kwargs)]


def _grey_pipeline(pipeline: list) -> list:
    """The pipeline with grey (H, W) images instead of BGR ones.

    The image is decoded grey, which costs nothing, except where ``PhotoMetricDistortion``
    needs three channels (it goes through HSV): there it loads in colour and turns grey right
    after that step, at crop size. (That is a training pipeline, whose batching resets the
    (H, W, 1) ``img_shape`` that RGB2Gray leaves.)
    """
    types = [t['type'] for t in pipeline]
    if 'RGB2Gray' in types:  # already grey, e.g. a config saved by a grey run
        return pipeline
    if 'PhotoMetricDistortion' in types:
        after = types.index('PhotoMetricDistortion') + 1
        return [*pipeline[:after], GREY_TRANSFORM, *pipeline[after:]]
    return [dict(t, color_type='grayscale') if t['type'] in LOADERS else t for t in pipeline]


def make_grayscale(cfg: MutableMapping) -> None:
    """One-channel input for any of the configs: grey pipelines and a 1-channel stem.

    The backbone's first convolution takes 1 channel (``in_channels=1``); ImageNet weights
    have 3 there, so that one layer keeps its random initialisation (mmengine warns about
    the shape mismatch) and every other layer loads. A test-time-augmentation model
    (``tools/test.py --tta``) is rewritten through the segmentor it wraps.
    """
    for key in [k for k in cfg if k.endswith('_pipeline')]:
        if isinstance(cfg[key], list):
            cfg[key] = _grey_pipeline(cfg[key])
    for loader in DATALOADERS:
        dataset = (cfg.get(loader) or {}).get('dataset', {})
        if 'pipeline' in dataset:
            dataset['pipeline'] = _grey_pipeline(dataset['pipeline'])
    model = segmentor(cfg)
    model['backbone']['in_channels'] = 1
    preprocessor = model['data_preprocessor']  # the RGB statistics averaged into one channel
    preprocessor.update(mean=[sum(preprocessor['mean']) / len(preprocessor['mean'])],
                        std=[sum(preprocessor['std']) / len(preprocessor['std'])],
                        bgr_to_rgb=False)
