# UNet++ on HRNet-W64 (timm), predicting at the full input size, multi-label: one sigmoid per
# bone. Trained at 1024 by default; 1536 and 2048: see ./_base_/models/unetpp_timm.py.
_base_ = ['./_base_/models/unetpp_timm.py']
model = dict(
    # timm's features_only HRNet: the stem (stride 2) and the four branches after the
    # classification head's 'incre' blocks, which widen them to 128..1024 channels
    backbone=dict(model_name='hrnet_w64'),
    decode_head=dict(in_channels=(64, 128, 256, 512, 1024)))
