"""Pictures of multi-label results: overlays, error maps, the visualiser, charts and the
HTML report."""
from .charts import plot_class_dice, plot_image_dice
from .html_report import render_html
from .overlay import FN_COLOUR, FP_COLOUR, draw_errors, draw_panels, error_masks, overlay_masks
from .report import ImageIndex, ReportError, index_images, write_report
from .visualizer import MultiLabelSegVisualizer, enable_show_dir
from .wandb_backend import HandBoneWandbVisBackend

__all__ = [
    'plot_class_dice', 'plot_image_dice', 'render_html', 'FN_COLOUR', 'FP_COLOUR',
    'draw_errors', 'draw_panels', 'error_masks', 'overlay_masks', 'ImageIndex', 'ReportError',
    'index_images', 'write_report', 'MultiLabelSegVisualizer', 'enable_show_dir',
    'HandBoneWandbVisBackend',
]
