from .manet_head import MAnetHead
from .unetpp_head import UNetHead, UNetPlusPlusHead

__all__ = ['MAnetHead', 'UNetHead', 'UNetPlusPlusHead']
