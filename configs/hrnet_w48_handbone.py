# OCRNet: HRNetV2-W48 + OCR (FCN head, then OCR head), multi-label: one sigmoid per bone.
# 2048 X-rays trained at 1024 (dataset base), BCE + Dice, AdamW + warm-up + poly, AMP.
_base_ = [
    'mmseg::_base_/models/ocrnet_hr18.py',
    './_base_/models/hrnet_w48.py',
    './_base_/datasets/handbone.py',
    './_base_/handbone_runtime.py',
]
crop_size = (1024, 1024)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # mmengine uses BN when not distributed
hr48 = [48, 96, 192, 384]
model = dict(
    type='MultiLabelCascadeEncoderDecoder',
    data_preprocessor=dict(seg_pad_val={{_base_.seg_pad_val}}, size=crop_size),
    pretrained={{_base_.hrnet_w48_pretrained}},
    backbone=dict(extra={{_base_.hrnet_w48_extra}}),
    decode_head=[
        dict(type='FCNHead', in_channels=hr48, channels=sum(hr48), in_index=(0, 1, 2, 3),
             input_transform='resize_concat', kernel_size=1, num_convs=1, concat_input=False,
             dropout_ratio=-1, num_classes={{_base_.num_classes}}, norm_cfg=norm_cfg,
             align_corners=False,
             loss_decode={{_base_.multilabel_aux_loss}}),
        dict(type='OCRHead', in_channels=hr48, channels=512, ocr_channels=256,
             in_index=(0, 1, 2, 3), input_transform='resize_concat', dropout_ratio=-1,
             num_classes={{_base_.num_classes}}, norm_cfg=norm_cfg, align_corners=False,
             loss_decode={{_base_.multilabel_loss}}),
    ],
    test_cfg=dict(mode='whole'))
