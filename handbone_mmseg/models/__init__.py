from .backbones import HandBoneTIMMBackbone
from .decode_heads import MAnetHead, UNetHead, UNetPlusPlusHead
from .losses import (
    MultiLabelBCELoss,
    MultiLabelDiceLoss,
    MultiLabelFocalLoss,
    MultiLabelIoULoss,
    MultiLabelTverskyLoss,
)
from .segmentors import MultiLabelCascadeEncoderDecoder, MultiLabelEncoderDecoder
from .tta import MultiLabelTTAModel

__all__ = ['HandBoneTIMMBackbone', 'MAnetHead', 'UNetHead', 'UNetPlusPlusHead',
           'MultiLabelBCELoss', 'MultiLabelDiceLoss', 'MultiLabelFocalLoss', 'MultiLabelIoULoss',
           'MultiLabelTverskyLoss', 'MultiLabelCascadeEncoderDecoder', 'MultiLabelEncoderDecoder',
           'MultiLabelTTAModel']
