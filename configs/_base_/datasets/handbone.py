# Hand-bone X-rays (docs/format.md): 2048x2048 sources, 29 overlapping bone classes.
# Labels are bit-packed int32 maps (bit c = class c, bit 30 = padding), so the stock mmseg
# geometric transforms below work unchanged; pad labels with 1 << 30, never 255.
dataset_type = 'HandBoneDataset'
data_root = 'data/handbone'
n_folds = 5                 # patient-grouped folds of the labeled images
fold = 0                    # the validation fold; train on the others
# 'patient': patients dealt round-robin; 'patient_stratified': also the wrist angle and the
# hand side balanced across folds (about 60% of test images show a bent wrist against 12%
# of training images; the 2023 winners stratified by wrist angle), handbone_mmseg.datasets.folds
fold_strategy = 'patient'
# The sizes: handbone_mmseg.apis.apply_switches writes them into every pipeline and the data
# preprocessor, so a child config or --cfg-options sets these variables, never a pipeline's.
train_scale = (1024, 1024)  # sources are resized around this before cropping
crop_size = (1024, 1024)    # network input in training
test_scale = (1024, 1024)   # whole-image inference scale (unused by full_resolution)
seg_pad_val = 1 << 30       # the ignore bit (handbone_mmseg.classes.IGNORE_VALUE)
num_classes = 29            # len(handbone_mmseg.classes.CLASSES): one sigmoid per bone
# True: one grey input channel (images decoded grey, or turned grey after the photometric
# step; the backbone's stem takes 1 channel, ImageNet weights load except that first conv);
# handbone_mmseg.apis.apply_switches applies it to every pipeline and model.
grayscale = False
# BCE + Dice, the loss of the public recipes; any decode head takes these lists as its
# loss_decode (model configs use {{_base_.multilabel_loss}}), auxiliary heads at 0.4.
multilabel_loss = [
    dict(type='MultiLabelBCELoss', loss_weight=1.0),
    dict(type='MultiLabelDiceLoss', loss_weight=1.0),
]
multilabel_aux_loss = [
    dict(type='MultiLabelBCELoss', loss_weight=0.4),
    dict(type='MultiLabelDiceLoss', loss_weight=0.4),
]
# Other losses reported on the real task (LEADERBOARD.md), for a model config's
# `loss_decode={{_base_.NAME}}`; one weight at a time from the command line:
# `--cfg-options model.decode_head.loss_decode.0.loss_weight=0.2`.
# The weights that measured best there: mDice 0.9503 against 0.9456 with BCE alone.
multilabel_loss_bce_dice_iou = [
    dict(type='MultiLabelBCELoss', loss_weight=0.1),
    dict(type='MultiLabelDiceLoss', loss_weight=0.6),
    dict(type='MultiLabelIoULoss', loss_weight=0.3),
]
# Focal + Dice, the 2023 winner's loss (focal alone measured 0.9452); Lin et al.'s alpha
# and gamma.
multilabel_loss_focal_dice = [
    dict(type='MultiLabelFocalLoss', alpha=0.25, gamma=2.0, loss_weight=1.0),
    dict(type='MultiLabelDiceLoss', loss_weight=1.0),
]
# Tversky (0.9490 there; that team's alpha and beta are not known): Salehi et al.'s
# 0.3 / 0.7, which costs a missed bone pixel more than a false one.
multilabel_loss_tversky = [
    dict(type='MultiLabelTverskyLoss', alpha=0.3, beta=0.7, loss_weight=1.0),
]

train_pipeline = [
    dict(type='LoadXrayFromFile'),
    dict(type='RandomResize', scale=train_scale, ratio_range=(0.8, 1.25), keep_ratio=True),
    # rasterised at the resized shape: far cheaper than 29 full-size masks resized
    dict(type='LoadMultiLabelAnnotations'),
    # test images have many more bent wrists than train (docs/format.md)
    dict(type='RandomRotate', prob=0.5, degree=45, pad_val=0, seg_pad_val=seg_pad_val),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # grey X-rays: brightness and contrast only. Hue shifts leave grey pixels (saturation 0)
    # as they are; hue_delta=0 would crash half the samples (numpy randint(0, 0)).
    dict(type='PhotoMetricDistortion', brightness_delta=24, contrast_range=(0.75, 1.25),
         saturation_range=(1.0, 1.0), hue_delta=1),
    dict(type='PackSegInputs'),
]
# Ground truth stays at the original size: Dice is defined at 2048x2048.
test_pipeline = [
    dict(type='LoadXrayFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='LoadMultiLabelAnnotations', at_original_size=True),  # no-op when unlabeled
    dict(type='PackSegInputs'),
]
# `tools/test.py --tta`: the whole-image scale times tta_ratios, each plain and mirrored
# (6 passes). Ground truth, when present, stays in the original frame: predictions are
# un-flipped and resized back before averaging. apply_switches follows test_scale.
tta_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadXrayFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(test_scale[0] * r), int(test_scale[1] * r)),
              keep_ratio=True) for r in tta_ratios],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='LoadMultiLabelAnnotations', at_original_size=True)],
        [dict(type='PackSegInputs')],
    ]),
]
# Full-resolution inference (nnU-Net's scheme): the test image is not resized (2048, where
# Dice is scored), windows of the training crop slide over it in half-window steps, and each
# window's sigmoid probabilities are blended with Gaussian weights (sigma = window / 8) into
# one full-size map (MultiLabelMixin). True (in a config, or `--cfg-options
# full_resolution=True` for tools/test.py, with or without --tta): apply_switches makes
# model.test_cfg dict(mode='slide', crop_size=crop_size, stride=crop_size // 2,
# blend='gaussian', sigma_scale=1 / 8, batch_windows=1), drops the Resize of the test
# pipelines, and makes the --tta resizes scale_factor=tta_ratios of the source size.
# `--cfg-options model.test_cfg.batch_windows=4` runs 4 windows per forward pass.
full_resolution = False

labeled = dict(img_path='train/DCM', seg_map_path='train/outputs_json')
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=labeled, split='train',
                 n_folds=n_folds, fold=fold, fold_strategy=fold_strategy,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=labeled, split='val',
                 n_folds=n_folds, fold=fold, fold_strategy=fold_strategy,
                 pipeline=test_pipeline))
# The unlabeled test images; `tools/test.py ... --out DIR` writes DIR/submission.csv.
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='test/DCM'),
                 pipeline=test_pipeline))
val_evaluator = dict(type='MultiLabelDiceMetric')
test_evaluator = val_evaluator
