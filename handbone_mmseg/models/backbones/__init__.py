from .timm_encoder import HandBoneTIMMBackbone

__all__ = ['HandBoneTIMMBackbone']
