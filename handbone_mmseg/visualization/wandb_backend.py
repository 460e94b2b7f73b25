"""Weights & Biases backend that logs this package's code, not the working directory's."""
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.visualization import WandbVisBackend
from mmengine.visualization.vis_backend import force_init_env
from mmseg.registry import VISBACKENDS

PACKAGE_DIR = Path(__file__).resolve().parents[1]


@VISBACKENDS.register_module()
class HandBoneWandbVisBackend(WandbVisBackend):
    """mmengine's ``WandbVisBackend`` whose code artifact holds ``handbone_mmseg`` only.

    The stock backend calls ``wandb.run.log_code()`` on the current directory, which walks and
    uploads every ``.py`` below it: started from a checkout, that is the whole ``.venv``. The
    config still goes to the run's config, and wandb records the git commit by itself.

    Args:
        log_code: upload the package's ``.py`` files as the run's code artifact.
        **kwargs: as ``WandbVisBackend`` (``save_dir``, ``init_kwargs``, ...).
    """

    def __init__(self, save_dir: str, log_code: bool = True, **kwargs: Any) -> None:
        super().__init__(save_dir, **kwargs)
        self._log_code = log_code

    @force_init_env
    def add_config(self, config: Config, **kwargs: Any) -> None:
        """Record the config, and the package's code when ``log_code`` is set."""
        allow_val_change = self._init_kwargs.get('allow_val_change', False)
        self._wandb.config.update(config.to_dict(), allow_val_change=allow_val_change)
        if self._log_code:
            self._wandb.run.log_code(str(PACKAGE_DIR), name=self._log_code_name,
                                     include_fn=lambda path: path.endswith('.py'))
