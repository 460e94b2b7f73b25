"""The output folder of ``tools/predict.py``: its formats and file names, and the check that
it is writable (the writer: ``handbone_mmseg.convert.predictions.PredictionWriter``).

=================================  ==========================================================
``submission.csv``  (csv)          docs/format.md: 29 rows per image, row-major RLE
``masks/<stem>/NN_<class>.png``    one 8-bit mask per class (0 or 255), NN = class number
(png)
``overlays/<stem>.png`` (overlay)  the image with its bones in the palette colours
``predictions.coco.json`` (coco)   COCO instances: one RLE annotation per bone per image,
                                   ``score`` = mean probability inside the mask
``probs/`` (npz)                   the probability dumps of ``tools/test.py --save-probs``
``images.json`` (always)           per image: file, size, pixel spacing (DICOM)
=================================  ==========================================================
"""
import os
from pathlib import Path

from .atomic import probe_write

FORMATS = ('csv', 'png', 'overlay', 'coco', 'npz')
SUBMISSION = 'submission.csv'
MASK_DIR = 'masks'
OVERLAY_DIR = 'overlays'
COCO_FILE = 'predictions.coco.json'
PROB_DIR = 'probs'
IMAGES_FILE = 'images.json'
# the hidden folder a run writes into before it moves its outputs into place
STAGE_PREFIX = '.predict-'


def check_output_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` if needed and prove it writable, before any work is done.

    Raises:
        ValueError: ``out`` is a file, cannot be created, or refuses the test write
            (``probe_write``: a full disk or quota too); names it.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_write(out)
    except OSError as e:
        raise ValueError(f'{out}: cannot write the outputs here ({e.strerror or e})') from None
    return out
