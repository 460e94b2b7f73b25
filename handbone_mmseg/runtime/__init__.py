"""Running the tools: distributed start and exit, checkpoint checks before loading."""
from .checkpoint import check_checkpoint_classes, check_checkpoint_fits
from .distributed import exit_if_distributed, prepare_launcher

__all__ = ['check_checkpoint_classes', 'check_checkpoint_fits', 'exit_if_distributed',
           'prepare_launcher']
