"""``HandBoneRunner``: mmengine's ``Runner`` that applies the plugin's config switches.

mmseg's ``tools/train.py`` (and ``mim train``) build ``RUNNERS.build(cfg)`` when the config
has ``runner_type``, and the runtime base sets ``runner_type = 'HandBoneRunner'``, so a config
that sets a switch (``grayscale``, ``use_wandb``, the sizes, ``full_resolution``,
``accumulative_counts``, ``grad_checkpointing``: ``apply_switches``) gets it there as it does
through this project's tools. ``Runner.from_cfg`` of a config that has not been through
``load_config`` would ignore them.
"""
import copy

from mmengine.config import Config, ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .registry_check import check_registered, check_sync_bn
from .switches import apply_switches


# In mmengine's root registry: mmseg's RUNNERS (a child) finds it through its parent, and so
# does the root when no default scope is set yet, as in mmseg's tools/train.py.
@RUNNERS.register_module()
class HandBoneRunner(Runner):
    """A ``Runner`` whose ``from_cfg`` applies the config switches first.

    ``from_cfg(cfg)``: copy the config -> ``apply_switches`` (idempotent, so a config from
    ``load_config`` is unchanged) -> ``check_registered`` (every type exists) and
    ``check_sync_bn`` -> ``Runner.from_cfg``.
    """

    @classmethod
    def from_cfg(cls, cfg: Config | ConfigDict | dict) -> 'HandBoneRunner':
        from ..register import register_all_modules
        register_all_modules()  # a config without the plugin in its custom_imports
        cfg = copy.deepcopy(cfg)
        apply_switches(cfg)
        source = getattr(cfg, 'filename', None) or 'the config'
        check_registered(cfg, source)
        check_sync_bn(cfg, source)
        return super().from_cfg(cfg)
