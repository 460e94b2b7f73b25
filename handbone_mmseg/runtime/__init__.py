"""Running the tools: distributed start and exit, checkpoint checks before loading, resume."""
from .checkpoint import check_checkpoint_classes, check_checkpoint_fits
from .distributed import exit_if_distributed, prepare_launcher
from .resume import WorkDirResumeHook, checkpoint_problem, resolve_resume

__all__ = ['WorkDirResumeHook', 'check_checkpoint_classes', 'check_checkpoint_fits',
           'checkpoint_problem', 'exit_if_distributed', 'prepare_launcher', 'resolve_resume']
