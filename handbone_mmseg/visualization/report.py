"""A submission seen against a data folder: per-image Dice (``evaluation.scoring``), pictures,
charts (``charts``), one HTML page (``html_report``).

Everything streams one image at a time: Dice is counted image by image, and only the
images chosen for pictures are decoded a second time. The report is a folder that opens
anywhere: ``report.html`` beside its charts and ``images/``, linked by relative paths.
"""
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import cv2
import numpy as np

from ..classes import CLASSES, PALETTE
from ..evaluation.scoring import dice_table, gt_masks, load_labels, worst_images
from ..io.atomic import atomic_open
from ..io.images import read_image
from ..io.submission import SubmissionError, decode_image, iter_submission
from ..utils.progress import track
from .charts import plot_class_dice, plot_image_dice
from .html_report import render_html
from .overlay import draw_panels, write_png

CLASS_CHART = 'dice_per_class.png'
IMAGE_CHART = 'dice_per_image.png'
PICTURE_DIR = 'images'
REPORT_FILE = 'report.html'
# The port of the viewer command a report prints: its image links open on that server.
VIEWER_PORT = 8765


class ReportError(ValueError):
    """Inputs that do not fit together (an image missing from the data folder, ...)."""


@dataclass(frozen=True)
class ImageIndex:
    """The images of a data folder by file name.

    Attributes:
        folder: the image folder (``data_root/img_dir``), for messages.
        infos: file name -> data info (``img_path``, ``ori_shape``; ``polygons`` if labeled).
    """

    folder: Path
    infos: dict[str, dict]

    def get(self, name: str, submission: Path) -> dict:
        """The info of an image that ``submission`` names.

        Raises:
            ReportError: the image is not in the folder.
        """
        if name not in self.infos:
            raise ReportError(f'{submission}: image {name} is not among the images under '
                              f'{self.folder}')
        return self.infos[name]


def browse_command(images: str | Path, predictions: Sequence[str | Path],
                   labels: str | Path | None = None, port: int = VIEWER_PORT) -> str:
    """The ``tools/browse.py`` command that shows ``images`` with ``predictions`` (and
    ``labels``, a polygon folder) on ``port`` (0: a free one)."""
    args = ['python', 'tools/browse.py', str(images)]
    for prediction in predictions:
        args += ['--pred', str(prediction)]
    if labels is not None:
        args += ['--labels', str(labels)]
    if port:
        args += ['--port', str(port)]
    return shlex.join(args)


def viewer_link(name: str, view: str = 'error', port: int = VIEWER_PORT) -> str:
    """The address at which the viewer of ``browse_command`` opens image ``name`` in
    ``view`` (``'label'``, ``'pred'`` or ``'error'``)."""
    return f'http://127.0.0.1:{port}/#{urlencode(dict(image=name, view=view))}'


def index_images(data_root: str | Path, img_dir: str, ann_dir: str | None = None) -> ImageIndex:
    """Read and check a data folder as ``HandBoneDataset`` does for training.

    Raises:
        ReportError: two images share a file name, so submission rows cannot tell them apart.
        AnnotationError, FileNotFoundError: bad or missing files, named.
    """
    return ImageIndex(Path(data_root) / img_dir, load_labels(data_root, img_dir, ann_dir))


def ground_truth(info: dict) -> np.ndarray:
    """(C, H, W) bool masks of a labeled image's polygons, at its original size."""
    return gt_masks(info)


def read_rgb(info: dict) -> np.ndarray:
    """The image of a data info (PNG or DICOM) as (H, W, 3) uint8 RGB; grey files become
    three channels."""
    path = info['img_path']
    try:
        image, _ = read_image(path)
    except ValueError as e:
        raise ReportError(str(e)) from None
    if image.shape[:2] != tuple(info['ori_shape']):
        raise ReportError(f'{path}: decoded {image.shape[:2]}, header says {info["ori_shape"]}')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def draw_images(submission: str | Path, images: ImageIndex, names: Sequence[str],
                out_dir: str | Path, max_size: int | None = 1024,
                progress: bool = False) -> dict[str, Path]:
    """Write ``out_dir/<stem>.png`` for each of ``names``: panels as in ``draw_panels``
    (with a progress bar where stderr is a terminal, if ``progress``).

    Labeled images get prediction | ground truth | errors, unlabeled ones the prediction.

    Returns:
        Image name -> written file, in the order of ``names``.

    Raises:
        ReportError: a name, or an image of the CSV, that is not in the data folder.
        SubmissionError: a name without rows in the CSV, or a malformed CSV.
    """
    submission = Path(submission)
    wanted = set(names)
    for name in names:
        images.get(name, submission)
    written = {}
    rows = track(iter_submission(submission), total=len(images.infos), description='draw',
                 enabled=None if progress else False)
    for name, rles in rows:
        info = images.get(name, submission)  # a foreign image means the wrong folder
        if name not in wanted:
            continue
        pred = decode_image(submission, name, rles, info['ori_shape'])
        gt = ground_truth(info) if 'polygons' in info else None
        picture = draw_panels(read_rgb(info), pred, gt, PALETTE, CLASSES, max_size=max_size)
        written[name] = Path(out_dir) / f'{Path(name).stem}.png'
        write_png(written[name], picture)
    missing = sorted(wanted - written.keys())
    if missing:
        raise SubmissionError(f'{submission}: no rows for image {", ".join(missing)}')
    return {name: written[name] for name in names}


def write_report(submission: str | Path, data_root: str | Path, img_dir: str,
                 out_dir: str | Path, ann_dir: str | None = None,
                 images: Sequence[str] | None = None, worst: int = 8,
                 max_size: int | None = 1024, progress: bool = False) -> Path:
    """Pictures, charts (labeled data) and ``report.html`` for a submission, in ``out_dir``.

    Args:
        submission: the submission CSV.
        data_root: the data folder; ``img_dir`` and ``ann_dir`` are relative to it.
        img_dir: the images the submission covers.
        out_dir: where the report goes (created).
        ann_dir: their polygon JSONs, or None for unlabeled images (no Dice, no charts).
        images: image names to draw; None draws the ``worst`` images by Dice (labeled data).
        worst: how many of the worst images to draw when ``images`` is None.
        max_size: longest side of each picture panel in pixels (None: original size).
        progress: progress bars for scoring and drawing (only where stderr is a terminal).

    Returns:
        The path of ``report.html``.

    Raises:
        ReportError, SubmissionError, AnnotationError, FileNotFoundError: bad inputs; the
            message names the file.
    """
    submission, out_dir = Path(submission), Path(out_dir)
    if not submission.is_file():
        raise ReportError(f'{submission}: submission CSV not found')
    index = index_images(data_root, img_dir, ann_dir)
    for name in images or ():  # before the scoring pass, not after it
        index.get(name, submission)
    facts = [('submission', str(submission)), ('images', str(Path(data_root) / img_dir))]
    table, charts = None, []
    if ann_dir is not None:
        table = dice_table(submission, index.infos, progress)
        plot_class_dice(table.per_class, out_dir / CLASS_CHART)
        plot_image_dice(table.per_image, out_dir / IMAGE_CHART)
        charts = [CLASS_CHART, IMAGE_CHART]
        facts += [('labels', str(Path(data_root) / ann_dir)),
                  ('mean Dice', f'{table.mean:.4f} over {len(table.names)} images')]
    heading = 'Images'
    if images is None:
        if table is None:
            raise ReportError('unlabeled images: name the images to draw (no Dice to pick '
                              'the worst without labels)')
        images, heading = worst_images(table, worst), f'The {worst} worst images by Dice'
    drawn = draw_images(submission, index, images, out_dir / PICTURE_DIR, max_size, progress)
    pictures = {name: path.relative_to(out_dir).as_posix() for name, path in drawn.items()}
    # each picture links to the viewer that the printed command starts (docs/viewer.md)
    labels = None if ann_dir is None else Path(data_root) / ann_dir
    facts.append(('viewer', browse_command(Path(data_root) / img_dir, [submission], labels)))
    links = {name: viewer_link(name, 'pred' if table is None else 'error') for name in pictures}
    page = render_html('Hand-bone segmentation report', facts, table, charts, pictures,
                       heading, links=links)
    path = out_dir / REPORT_FILE
    with atomic_open(path, 'w', encoding='utf-8') as f:
        f.write(page)
    return path
