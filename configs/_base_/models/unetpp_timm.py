# UNet++ on a timm encoder, predicting at the full input size (UNetPlusPlusHead), multi-label:
# one sigmoid per bone. The model configs inherit only this file and set the encoder and
# its channels (configs/unetpp_hrnet_w64_handbone.py, unetpp_efficientnet_b5_handbone.py,
# unet_resnext101_handbone.py). It inherits the dataset and runtime bases itself, so that
# the head's loss is the dataset base's {{_base_.multilabel_loss}}, written once.
#
# Larger inputs on one GPU. The network input is the dataset base's crop_size (training)
# and test_scale (whole-image test); train_scale is what sources are resized around before
# cropping. All three default to 1024. For 1536 or 2048 set the three together, e.g.
#     crop_size = train_scale = test_scale = (1536, 1536)   # or (2048, 2048): no resize
# with batch_size 1 and accumulative_counts = 2 (the same effective batch of 2), and
# grad_checkpointing = True at 2048. Set them in a child file or as overrides of the run
# (`--cfg-options crop_size=(1536,1536) ...`): the pipelines, the data preprocessor's size,
# the optimizer wrapper and the model below are built from the values at parse time, and
# handbone_mmseg.apis.apply_switches (load_config, HandBoneRunner) writes the final values
# into them. crop_size must be a multiple of 32 (the encoders' stride; refused otherwise);
# the test pipeline pads test images to one.
_base_ = ['../datasets/handbone.py', '../handbone_runtime.py']

# > 1: sum the gradients of this many batches before each optimizer step (mmengine's
# OptimWrapper divides each loss by it): batch_size x accumulative_counts images per step.
# The learning-rate schedule still counts iterations (batches). Exact for BCE and per-image
# Dice; the batch Dice of multilabel_loss is then taken per batch.
accumulative_counts = 1
# True: recompute activations in the backward pass instead of keeping them, in the encoder
# (timm's set_grad_checkpointing, where the model has it: timm's HRNet has not, and warns)
# and in every decoder block: about one more forward pass of time, far less memory.
grad_checkpointing = False
# Every BatchNorm synchronised across GPUs in a distributed run, plain BN in one process
# (mmengine reverts SyncBN then): the decoder through mmcv's SyncBN layers, the timm encoder
# through timm's converter, which keeps its fused BatchNormAct2d activations (mmengine's
# sync_bn='torch' would drop them, and is refused for this backbone).
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='MultiLabelEncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],  # ImageNet statistics, as timm's weights expect
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val={{_base_.seg_pad_val}},  # the ignore bit, not 255
        size={{_base_.crop_size}},
        # test images are padded to a multiple of the encoder's stride (and un-padded after)
        test_cfg=dict(size_divisor=32)),
    # timm's ImageNet weights, downloaded from the Hugging Face hub; offline, a local file
    # in timm's format (`--cfg-options model.pretrained=/path/model.safetensors`) or None
    pretrained=True,
    backbone=dict(
        type='HandBoneTIMMBackbone',  # mmseg's TIMMBackbone with local weights
        model_name='resnet50',  # each model config names its encoder
        out_indices=(0, 1, 2, 3, 4),  # strides 2, 4, 8, 16, 32
        norm_cfg=norm_cfg,
        grad_checkpointing=grad_checkpointing),
    decode_head=dict(
        type='UNetPlusPlusHead',
        in_channels=(64, 256, 512, 1024, 2048),  # the encoder's channels at strides 2..32
        in_index=(0, 1, 2, 3, 4),
        decoder_channels=(256, 128, 64, 32, 16),  # strides 16, 8, 4, 2, then full size (smp)
        deep_supervision=False,  # True: also train 1x1 classifiers on X(0,1)..X(0,3)
        with_cp=grad_checkpointing,
        dropout_ratio=0.0,  # 16 channels at full size: no dropout before the classifier
        num_classes={{_base_.num_classes}},
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode={{_base_.multilabel_loss}}),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
optim_wrapper = dict(accumulative_counts=accumulative_counts)  # AMP: the runtime base

# The winning teams' training extras (LEADERBOARD.md: +0.005 to +0.013 with rotation, CLAHE
# and elastic deformation together; single augmentations were about neutral for one team).
# The dataset base already rotates up to 45 degrees half the time: about 60% of test images
# show a bent wrist against 12% of training images. CLAHE sharpens the cortex of faint bones
# on a third of the samples (on uint8 pixels, so before the photometric step, which makes
# floats); the elastic field moves bones by up to 2% of the crop, labels with them.
train_pipeline = [
    dict(type='LoadXrayFromFile'),
    dict(type='RandomResize', scale={{_base_.train_scale}}, ratio_range=(0.8, 1.25),
         keep_ratio=True),
    dict(type='LoadMultiLabelAnnotations'),
    dict(type='RandomRotate', prob=0.5, degree=45, pad_val=0,
         seg_pad_val={{_base_.seg_pad_val}}),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomApply', prob=0.3,
         transforms=[dict(type='CLAHE', clip_limit=2.0, tile_grid_size=(8, 8))]),
    dict(type='RandomElasticDeform', prob=0.3, max_shift=0.02, grid=4),
    dict(type='PhotoMetricDistortion', brightness_delta=24, contrast_range=(0.75, 1.25),
         saturation_range=(1.0, 1.0), hue_delta=1),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# An exponential moving average of the weights (mmengine's EMAHook): validation and test run
# on the averaged weights, and every checkpoint's state_dict holds them (the raw weights go
# to ema_state_dict, from which --resume continues training). mmengine's
# MomentumAnnealingEMA warms up: each step moves the average by max(momentum, gamma /
# (gamma + step)), so it spans about the last step / gamma iterations (200 at the first
# validation, 4000 at the end of the 40k schedule), at most 1 / momentum = 5000.
custom_hooks = [dict(type='EMAHook', ema_type='MomentumAnnealingEMA', momentum=0.0002,
                     gamma=10, update_buffers=True, priority=49)]
