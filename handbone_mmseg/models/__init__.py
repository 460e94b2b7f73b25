from .backbones import HandBoneTIMMBackbone
from .decode_heads import UNetHead, UNetPlusPlusHead
from .losses import MultiLabelBCELoss, MultiLabelDiceLoss, MultiLabelIoULoss
from .segmentors import MultiLabelCascadeEncoderDecoder, MultiLabelEncoderDecoder
from .tta import MultiLabelTTAModel

__all__ = ['HandBoneTIMMBackbone', 'UNetHead', 'UNetPlusPlusHead',
           'MultiLabelBCELoss', 'MultiLabelDiceLoss', 'MultiLabelIoULoss',
           'MultiLabelCascadeEncoderDecoder', 'MultiLabelEncoderDecoder', 'MultiLabelTTAModel']
