"""Pictures of multi-label results: overlays, error maps, the visualiser, the HTML report."""
from .overlay import FN_COLOUR, FP_COLOUR, draw_errors, draw_panels, error_masks, overlay_masks
from .report import (
                      DiceTable,
                      ImageIndex,
                      ReportError,
                      index_images,
                      iter_dice_counts,
                      plot_class_dice,
                      plot_image_dice,
                      score,
                      worst_images,
                      write_report,
)
from .visualizer import MultiLabelSegVisualizer, enable_show_dir
from .wandb_backend import HandBoneWandbVisBackend

__all__ = [
    'FN_COLOUR', 'FP_COLOUR', 'draw_errors', 'draw_panels', 'error_masks', 'overlay_masks',
    'DiceTable', 'ImageIndex', 'ReportError', 'index_images', 'iter_dice_counts',
    'plot_class_dice', 'plot_image_dice', 'score', 'worst_images', 'write_report',
    'MultiLabelSegVisualizer', 'enable_show_dir', 'HandBoneWandbVisBackend',
]
