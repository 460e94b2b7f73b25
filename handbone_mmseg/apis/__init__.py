"""From a config file and overrides to a run: the same path for the tools and for Python."""
from .config import DATASET_VARIABLES, check_cfg_options, default_work_dir, load_config
from .inferencer import HandBoneInferencer, HandBonePrediction, InferenceInput, to_inputs
from .preflight import check_folds
from .runner import HandBoneRunner
from .switches import add_wandb_backend, apply_switches, make_grayscale

__all__ = ['DATASET_VARIABLES', 'HandBoneInferencer', 'HandBonePrediction', 'HandBoneRunner',
           'InferenceInput', 'to_inputs', 'add_wandb_backend', 'apply_switches',
           'check_cfg_options', 'check_folds', 'default_work_dir', 'load_config', 'make_grayscale']
