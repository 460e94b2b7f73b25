# A small stock mmseg UNet that learns the phantom hands on 2 CPU cores in minutes
# (`make demo`). Same data pipeline, losses, metric and outputs as the real configs.
_base_ = [
    'mmseg::_base_/models/fcn_unet_s5-d16.py',
    './_base_/datasets/handbone.py',
    './_base_/handbone_runtime.py',
]
data_root = 'data/phantom'
train_scale = (256, 256)
crop_size = (256, 256)
test_scale = (256, 256)
max_iters = 1500
val_interval = 500

norm_cfg = dict(type='BN', requires_grad=True)  # one CPU process: no SyncBN
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=1 << 30,  # the ignore bit, not 255
    size=crop_size)
multilabel_losses = [
    dict(type='MultiLabelBCELoss', loss_weight=1.0),
    dict(type='MultiLabelDiceLoss', loss_weight=1.0),
]
model = dict(
    type='MultiLabelEncoderDecoder',
    data_preprocessor=data_preprocessor,
    threshold=0.5,
    backbone=dict(base_channels=16, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=16, channels=16, num_classes=29, norm_cfg=norm_cfg,
                     dropout_ratio=0.0, loss_decode=multilabel_losses),
    auxiliary_head=None,
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadXrayFromFile'),
    dict(type='RandomResize', scale=train_scale, ratio_range=(0.9, 1.1), keep_ratio=True),
    dict(type='LoadMultiLabelAnnotations'),
    dict(type='RandomRotate', prob=0.5, degree=20, pad_val=0, seg_pad_val=1 << 30),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadXrayFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='LoadMultiLabelAnnotations', at_original_size=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = dict(num_workers=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))

optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=val_interval))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
