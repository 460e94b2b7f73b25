"""handbone-mmseg: multi-label hand-bone segmentation for MMSegmentation 1.x.

Importing the package is cheap: it imports neither torch nor mmseg, so the tools after
training start at once. Its members load on first use (``handbone_mmseg.HandBoneInferencer``
imports the inferencer then). Registering into mmseg's registries is
``import handbone_mmseg.register`` (what configs list in ``custom_imports``) or
``handbone_mmseg.register_all_modules()``.
"""
from .classes import CLASSES, IGNORE_VALUE, NUM_CLASSES, PALETTE
from .utils.lazy import lazy_exports

__version__ = '0.1.0'

__getattr__, __dir__, _lazy = lazy_exports(__name__, {
    '.apis': ['DATASET_VARIABLES', 'HandBoneInferencer', 'HandBonePrediction',
              'HandBoneRunner', 'InferenceInput', 'to_inputs', 'add_wandb_backend',
              'apply_switches', 'check_cfg_options', 'check_data', 'check_folds',
              'default_work_dir', 'load_config', 'make_grayscale'],
    '.datasets': ['HandBoneDataset', 'patient_folds', 'LoadMultiLabelAnnotations',
                  'LoadXrayFromFile', 'RandomElasticDeform'],
    '.evaluation': ['MultiLabelDiceMetric', 'METHODS', 'iter_ensemble', 'search_postprocess',
                    'search_thresholds', 'DiceTable', 'dice_table', 'gt_masks',
                    'iter_dice_counts', 'load_labels', 'score_submission', 'worst_images',
                    'check_submission'],
    '.models': ['HandBoneTIMMBackbone', 'MAnetHead', 'UNetHead', 'UNetPlusPlusHead',
                'MultiLabelBCELoss', 'MultiLabelDiceLoss', 'MultiLabelFocalLoss',
                'MultiLabelIoULoss', 'MultiLabelTverskyLoss', 'MultiLabelCascadeEncoderDecoder',
                'MultiLabelEncoderDecoder', 'MultiLabelTTAModel'],
    '.register': ['register_all_modules'],
    '.visualization': ['plot_class_dice', 'plot_image_dice', 'render_html', 'FN_COLOUR',
                       'FP_COLOUR', 'draw_errors', 'draw_panels', 'error_masks',
                       'overlay_masks', 'ImageIndex', 'ReportError', 'index_images',
                       'write_report', 'MultiLabelSegVisualizer', 'enable_show_dir',
                       'HandBoneWandbVisBackend'],
})
__all__ = ['CLASSES', 'IGNORE_VALUE', 'NUM_CLASSES', 'PALETTE', *_lazy]
