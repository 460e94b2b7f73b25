"""From a config file and overrides to a run: the same path for the tools and for Python.

Members load on first use (``utils.lazy``): importing the package imports neither
torch nor mmseg."""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.config': ['DATASET_VARIABLES', 'check_cfg_options', 'default_work_dir', 'load_config'],
    '.cpu': ['cpu_stand_in'],
    '.inferencer': ['HandBoneInferencer', 'HandBonePrediction', 'InferenceInput', 'to_inputs'],
    '.preflight': ['check_data', 'check_folds', 'train_loaders'],
    '.registry_check': ['check_registered', 'check_sync_bn', 'class_arguments'],
    '.runner': ['HandBoneRunner'],
    '.switches': ['add_wandb_backend', 'apply_switches', 'make_grayscale', 'native_bf16'],
})
