# UNet++ on EfficientNet-B5 (timm's port of the TensorFlow weights), predicting at the full
# input size, multi-label: one sigmoid per bone. Trained at 1024 by default; 1536 and 2048:
# see ./_base_/models/unetpp_timm.py.
_base_ = ['./_base_/models/unetpp_timm.py']
model = dict(
    backbone=dict(model_name='tf_efficientnet_b5'),
    decode_head=dict(in_channels=(24, 40, 64, 176, 512)))
