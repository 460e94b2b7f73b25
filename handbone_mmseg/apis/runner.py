"""``HandBoneRunner``: mmengine's ``Runner`` that applies the plugin's config switches.

mmseg's ``tools/train.py`` (and ``mim train``) build ``RUNNERS.build(cfg)`` when the config
has ``runner_type``, and the runtime base sets ``runner_type = 'HandBoneRunner'``, so a config
that sets a switch (``grayscale``, ``use_wandb``, the sizes, ``full_resolution``,
``accumulative_counts``, ``grad_checkpointing``: ``apply_switches``) gets it there as it does
through this project's tools. ``Runner.from_cfg`` of a config that has not been through
``load_config`` would ignore them. The ``notify`` switch (``runtime.notify``) needs this
runner too: it registers ``NotifyHook`` and tells it when training fails.
"""
import copy

from mmengine.config import Config, ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch import nn

from ..runtime.notify import notify_hook
from .registry_check import check_registered, check_sync_bn
from .switches import apply_switches


# In mmengine's root registry: mmseg's RUNNERS (a child) finds it through its parent, and so
# does the root when no default scope is set yet, as in mmseg's tools/train.py.
@RUNNERS.register_module()
class HandBoneRunner(Runner):
    """A ``Runner`` whose ``from_cfg`` applies the config switches first.

    ``from_cfg(cfg)``: copy the config -> ``apply_switches`` (idempotent, so a config from
    ``load_config`` is unchanged) -> ``check_registered`` (every type exists) and
    ``check_sync_bn`` -> ``notify_hook`` (takes a webhook URL out of the config before
    mmengine logs and dumps it) -> ``Runner.from_cfg`` -> the ``NotifyHook`` registered.
    ``train()`` calls each hook's ``on_exception(runner, exception)`` when training raises,
    then re-raises (mmengine calls no hook then).
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
        notify = notify_hook(cfg, source)
        runner = super().from_cfg(cfg)
        if notify is not None:
            runner.register_hook(notify)
        return runner

    def train(self) -> nn.Module:
        try:
            return super().train()
        except BaseException as error:  # Ctrl-C and SIGTERM (SystemExit) end a run too
            self.call_hook('on_exception', exception=error)
            # LoggerHook.after_run never came: close the W&B run, or the next run in this
            # process (a search's next trial) would log into it
            self.visualizer.close()
            raise
