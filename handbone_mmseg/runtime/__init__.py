"""Running the tools: distributed start and exit, checkpoint checks before loading, resume,
the alert when a run ends.

Members load on first use (``utils.lazy``): importing the package imports neither
torch nor mmseg."""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.checkpoint': ['check_checkpoint_classes', 'check_checkpoint_config', 'check_checkpoint_fits',
                    'checkpoint_problem'],
    '.distributed': ['exit_if_distributed', 'prepare_launcher'],
    '.notify': ['NotifyHook', 'notify_hook', 'post_json'],
    '.optimizers': ['AdamP'],
    '.resume': ['WorkDirResumeHook', 'resolve_resume'],
})
