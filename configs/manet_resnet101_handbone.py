# MAnet on ResNet-101 (timm), predicting at the full input size, multi-label: one sigmoid per
# bone. The 2023 runner-up's model (0.9749 private, with segmentation_models_pytorch; the
# decoder's layers and channels are smp's: handbone_mmseg/models/decode_heads/manet_head.py).
# Trained at 1024 by default; 1536 and 2048: see ./_base_/models/unetpp_timm.py.
_base_ = ['./_base_/models/unetpp_timm.py']
model = dict(
    backbone=dict(model_name='resnet101'),
    decode_head=dict(
        type='MAnetHead',
        in_channels=(64, 256, 512, 1024, 2048),  # the stem at stride 2, then layer1..layer4
        pab_channels=64,  # queries and keys of the position attention on the stride-32 map
        reduction=16))  # squeeze-and-excitation reduction in the fusion blocks
