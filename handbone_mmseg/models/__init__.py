from .losses import MultiLabelBCELoss, MultiLabelDiceLoss, MultiLabelIoULoss
from .segmentors import MultiLabelCascadeEncoderDecoder, MultiLabelEncoderDecoder

__all__ = ['MultiLabelBCELoss', 'MultiLabelDiceLoss', 'MultiLabelIoULoss',
           'MultiLabelCascadeEncoderDecoder', 'MultiLabelEncoderDecoder']
