from .losses import MultiLabelBCELoss, MultiLabelDiceLoss, MultiLabelIoULoss
from .segmentors import MultiLabelCascadeEncoderDecoder, MultiLabelEncoderDecoder
from .tta import MultiLabelTTAModel

__all__ = ['MultiLabelBCELoss', 'MultiLabelDiceLoss', 'MultiLabelIoULoss',
           'MultiLabelCascadeEncoderDecoder', 'MultiLabelEncoderDecoder', 'MultiLabelTTAModel']
