"""An interactive viewer of images, labels and up to two models' predictions in the
browser (``tools/browse.py``; docs/viewer.md): a small standard-library server and one
static page that draws on canvases.

Members load on first use (``utils.lazy``): importing the package imports neither
torch nor mmseg."""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.catalog': ['Catalog', 'ImageEntry', 'ViewerError'],
    '.server': ['Viewer', 'serve'],
    '.sources': ['Prediction', 'open_prediction'],
})
