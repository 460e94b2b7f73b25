# FCN on ResNet-101 (dilated, output stride 8), multi-label: one sigmoid per bone.
_base_ = [
    'mmseg::_base_/models/fcn_r50-d8.py',
    './_base_/datasets/handbone.py',
    './_base_/handbone_runtime.py',
]
crop_size = (1024, 1024)
model = dict(
    type='MultiLabelEncoderDecoder',
    data_preprocessor=dict(seg_pad_val={{_base_.seg_pad_val}}, size=crop_size),
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(num_classes={{_base_.num_classes}}, loss_decode={{_base_.multilabel_loss}}),
    auxiliary_head=dict(num_classes={{_base_.num_classes}},
                        loss_decode={{_base_.multilabel_aux_loss}}))
