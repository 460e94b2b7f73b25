# UNet on ResNeXt-101 32x8d (timm), predicting at the full input size, multi-label: one
# sigmoid per bone. Trained at 1024 by default; 1536 and 2048: see
# ./_base_/models/unetpp_timm.py.
_base_ = ['./_base_/models/unetpp_timm.py']
model = dict(
    backbone=dict(model_name='resnext101_32x8d'),
    # the plain UNet decoder: one skip per level, no nested nodes
    decode_head=dict(type='UNetHead', in_channels=(64, 256, 512, 1024, 2048)))
