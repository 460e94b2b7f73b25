"""Register the plugin's datasets, transforms, models, metric, hooks and visualisers into
mmseg's and mmengine's registries.

Importing this module registers everything; configs list it in ``custom_imports`` (the
runtime base does), so mmseg's own ``tools/train.py`` and ``mim train`` find the plugin.
``import handbone_mmseg`` alone registers nothing: the package stays light (no torch, no
mmseg) for the tools that need neither. From Python, call ``register_all_modules()`` (or
``load_config``, ``HandBoneRunner`` and ``HandBoneInferencer``, which call it) before
building anything from a config.
"""


def register_all_modules() -> None:
    """Import every registering module (idempotent) and let torch load mmengine's
    checkpoints."""
    # datasets and models register on import; the other packages are lazy, so their
    # registering modules are named
    from . import datasets, models  # noqa: F401
    from .apis import runner  # noqa: F401  (HandBoneRunner)
    from .compat import allow_mmengine_checkpoints
    from .evaluation import dice_metric  # noqa: F401
    from .runtime import notify, optimizers, resume  # noqa: F401  (hooks, AdamP)
    from .visualization import visualizer, wandb_backend  # noqa: F401
    allow_mmengine_checkpoints()


register_all_modules()
