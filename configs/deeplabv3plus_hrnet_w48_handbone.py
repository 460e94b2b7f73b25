# DeepLabV3+ on HRNetV2-W48, multi-label: ASPP on the 1/32 branch (384 channels), the
# decoder's low-level features from the 1/4 branch (48 channels).
_base_ = [
    'mmseg::_base_/models/fcn_hr18.py',
    './_base_/models/hrnet_w48.py',
    './_base_/datasets/handbone.py',
    './_base_/handbone_runtime.py',
]
crop_size = (1024, 1024)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # mmengine uses BN when not distributed
model = dict(
    type='MultiLabelEncoderDecoder',
    data_preprocessor=dict(seg_pad_val={{_base_.seg_pad_val}}, size=crop_size),
    pretrained={{_base_.hrnet_w48_pretrained}},
    backbone=dict(extra={{_base_.hrnet_w48_extra}}),
    decode_head=dict(
        _delete_=True, type='DepthwiseSeparableASPPHead', in_channels=384, in_index=3,
        channels=512, dilations=(1, 6, 12, 18),  # a 32x32 map at 1024 input
        c1_in_channels=48, c1_channels=48, dropout_ratio=0.1, num_classes={{_base_.num_classes}},
        norm_cfg=norm_cfg, align_corners=False, loss_decode={{_base_.multilabel_loss}}),
    test_cfg=dict(mode='whole'))
