from .unetpp_head import UNetHead, UNetPlusPlusHead

__all__ = ['UNetHead', 'UNetPlusPlusHead']
