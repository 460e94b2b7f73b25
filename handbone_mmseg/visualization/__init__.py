"""Pictures of multi-label results: overlays, error maps, the visualiser, charts and the
HTML report.

Members load on first use (``utils.lazy``): importing the package imports neither
torch nor mmseg."""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.charts': ['plot_class_dice', 'plot_image_dice'],
    '.html_report': ['render_html'],
    '.overlay': ['FN_COLOUR', 'FP_COLOUR', 'draw_errors', 'draw_panels', 'error_masks',
                 'overlay_masks'],
    '.report': ['ImageIndex', 'ReportError', 'index_images', 'write_report'],
    '.visualizer': ['MultiLabelSegVisualizer', 'enable_show_dir'],
    '.wandb_backend': ['HandBoneWandbVisBackend'],
})
