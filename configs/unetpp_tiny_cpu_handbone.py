# A small UNet++ at full resolution for the CPU (the demo's data, schedule and 256 input):
# a randomly initialised timm encoder under UNetPlusPlusHead, in place of the demo's mmseg UNet.
_base_ = ['./tiny_cpu_handbone.py']
model = dict(
    # test images padded to a multiple of the encoder's stride 32 (and un-padded after)
    data_preprocessor=dict(test_cfg=dict(size_divisor=32)),
    backbone=dict(
        _delete_=True,  # replaces the demo's UNet backbone
        type='HandBoneTIMMBackbone',
        # its training step costs about the demo UNet's (benchmarks/bench_unetpp_step.py)
        model_name='efficientnet_b0',
        out_indices=(0, 1, 2, 3, 4)),  # strides 2, 4, 8, 16, 32
    decode_head=dict(
        _delete_=True,  # replaces the demo's FCN head
        type='UNetPlusPlusHead',
        in_channels=(16, 24, 40, 112, 320),
        in_index=(0, 1, 2, 3, 4),
        decoder_channels=(32, 24, 16, 8, 8),  # strides 16, 8, 4, 2, then full size
        num_classes={{_base_.num_classes}},
        norm_cfg=dict(type='BN', requires_grad=True),  # one CPU process: no SyncBN
        dropout_ratio=0.0,
        align_corners=False,
        loss_decode={{_base_.multilabel_loss}}))
