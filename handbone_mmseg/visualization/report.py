"""A submission seen against a data folder: per-image Dice, pictures, charts, one HTML page.

Everything streams one image at a time: Dice is counted image by image, and only the
images chosen for pictures are decoded a second time. The report is a folder that opens
anywhere: ``report.html`` beside its charts and ``images/``, linked by relative paths.
"""
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import cv2
import numpy as np

from ..classes import CLASSES, PALETTE
from ..evaluation.scoring import gt_masks, iter_dice_counts, load_labels
from ..fileio import atomic_open
from ..functional.metrics import dice_from_counts
from ..functional.rle import SubmissionError, decode_image, iter_submission
from ..io.images import read_image
from ..utils.progress import track
from .overlay import ERROR_LEGEND, draw_panels, write_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CLASS_CHART = 'dice_per_class.png'
IMAGE_CHART = 'dice_per_image.png'
PICTURE_DIR = 'images'
REPORT_FILE = 'report.html'


class ReportError(ValueError):
    """Inputs that do not fit together (an image missing from the data folder, ...)."""


@dataclass(frozen=True)
class DiceTable:
    """Dice counts of a submission per image and class.

    Attributes:
        names: image names, in submission order.
        counts: (N, C, 3) intersection, prediction and ground-truth pixel counts.
    """

    names: list[str]
    counts: np.ndarray

    @property
    def dice(self) -> np.ndarray:
        """(N, C) Dice of each image and class."""
        return dice_from_counts(self.counts)

    @property
    def per_class(self) -> np.ndarray:
        """(C,) Dice of each class, averaged over images."""
        return self.dice.mean(0)

    @property
    def per_image(self) -> np.ndarray:
        """(N,) Dice of each image, averaged over classes."""
        return self.dice.mean(1)

    @property
    def mean(self) -> float:
        """The score of docs/format.md: per-class Dice averaged over classes."""
        return float(self.per_class.mean())


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


def index_images(data_root: str | Path, img_dir: str, ann_dir: str | None = None) -> ImageIndex:
    """Read and check a data folder as ``HandBoneDataset`` does for training.

    Raises:
        ReportError: two images share a file name, so submission rows cannot tell them apart.
        AnnotationError, FileNotFoundError: bad or missing files, named.
    """
    return ImageIndex(Path(data_root) / img_dir, load_labels(data_root, img_dir, ann_dir))


def ground_truth(info: dict) -> np.ndarray:
    """(C, H, W) bool masks of a labeled image's polygons, at its original size."""
    return gt_masks(info).numpy()


def score(submission: str | Path, images: ImageIndex, progress: bool = False) -> DiceTable:
    """Per-image, per-class Dice of a submission against labeled ``images`` (with a
    progress bar where stderr is a terminal, if ``progress``)."""
    names, counts = [], []
    for name, image_counts in track(iter_dice_counts(submission, images.infos),
                                    total=len(images.infos), description='score',
                                    enabled=None if progress else False):
        names.append(name)
        counts.append(image_counts)
    return DiceTable(names, np.stack(counts))


def worst_images(table: DiceTable, n: int) -> list[str]:
    """The ``n`` images of lowest mean Dice, worst first (ties in submission order)."""
    order = np.argsort(table.per_image, kind='stable')[:n]
    return [table.names[i] for i in order]


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


def _save_figure(figure: 'Figure', path: Path) -> None:
    with atomic_open(path, 'wb') as f:
        figure.savefig(f, format='png')


def _lower_limit(values: np.ndarray) -> float:
    """An axis start that shows differences among high Dice values: 0.9 or lower, by 0.05."""
    return min(0.9, float(np.floor(values.min() * 20) / 20))


def plot_class_dice(per_class: np.ndarray, path: str | Path, classes: Sequence[str] = CLASSES,
                    palette: Sequence[Sequence[int]] = PALETTE) -> None:
    """Horizontal bar per class in its palette colour, with its value and the mean; an
    800x800 PNG.

    The axis starts at 0, so every bar shows: cut at 0.5 (as it once was), a class at 0.51
    was an empty bar. The value written at each bar's end tells apart the classes near 1
    that bar lengths cannot.
    """
    # Imported here: the plugin's import (every config load) stays free of matplotlib.
    from matplotlib.figure import Figure
    figure = Figure(figsize=(8, 8), dpi=100)
    ax = figure.subplots()
    rows = np.arange(len(classes))
    bars = ax.barh(rows, per_class, color=np.asarray(palette) / 255, edgecolor='black',
                   linewidth=0.5)
    ax.bar_label(bars, labels=[f'{v:.4f}' for v in per_class], padding=2, fontsize=7)
    ax.set_yticks(rows, classes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.12)  # room for the values right of a bar at 1.0
    ax.set_xticks(np.linspace(0, 1, 11))
    ax.axvline(per_class.mean(), color='black', linestyle='--',
               label=f'mean {per_class.mean():.4f}')
    ax.set_xlabel('Dice, mean over images')
    ax.grid(axis='x', alpha=0.3)
    ax.legend(loc='lower left')
    figure.tight_layout()
    _save_figure(figure, Path(path))


def plot_image_dice(per_image: np.ndarray, path: str | Path) -> None:
    """Histogram of the per-image Dice (mean over classes); an 800x400 PNG."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    figure = Figure(figsize=(8, 4), dpi=100)
    ax = figure.subplots()
    ax.hist(per_image, bins=np.linspace(_lower_limit(per_image), 1.0, 41),
            color='tab:blue', edgecolor='black')
    ax.set_xlabel('Dice of one image, mean over classes')
    ax.set_ylabel('images')
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f'{len(per_image)} images, median {np.median(per_image):.4f}')
    figure.tight_layout()
    _save_figure(figure, Path(path))


_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 3px 10px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.weak td { background: #fde8e8; }
.swatch { display: inline-block; width: 28px; height: 14px; border: 1px solid #555; }
img { max-width: 100%; border: 1px solid #ccc; }
"""


def render_html(title: str, facts: Sequence[tuple[str, str]], table: DiceTable | None,
                charts: Sequence[str], pictures: dict[str, str],
                pictures_heading: str = 'Images', classes: Sequence[str] = CLASSES,
                palette: Sequence[Sequence[int]] = PALETTE) -> str:
    """The report page: facts, per-class table (Dice when labeled), charts, pictures.

    Args:
        title: page heading.
        facts: ``(label, value)`` lines shown under the heading.
        table: Dice of the submission, or None for unlabeled data (the table is then the
            colour legend alone).
        charts: chart files, relative to the page.
        pictures: image name -> picture file relative to the page.
        pictures_heading: the heading above the pictures.
    """
    esc = html.escape
    out = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<title>{esc(title)}</title><style>{_STYLE}</style></head><body>',
           f'<h1>{esc(title)}</h1>', '<ul>']
    out += [f'<li>{esc(label)}: {esc(value)}</li>' for label, value in facts]
    out += ['</ul>', '<h2>Classes</h2>', '<table id="classes"><thead><tr><th>#</th>'
            '<th>colour</th><th>class</th>']
    if table is not None:
        out.append('<th>Dice</th><th>lowest image</th><th>its Dice</th>')
        dice = table.dice
        weak = set(np.argsort(table.per_class, kind='stable')[:3].tolist())
    out.append('</tr></thead><tbody>')
    for c, (name, colour) in enumerate(zip(classes, palette)):
        row = f'<td class="num">{c + 1}</td><td><span class="swatch" style="background: ' \
              f'rgb{tuple(colour)}"></span></td><td>{esc(name)}</td>'
        if table is not None:
            low = int(dice[:, c].argmin())
            row += (f'<td class="num">{table.per_class[c]:.4f}</td>'
                    f'<td>{esc(table.names[low])}</td><td class="num">{dice[low, c]:.4f}</td>')
        attributes = ' class="weak"' if table is not None and c in weak else ''
        out.append(f'<tr{attributes}>{row}</tr>')
    out.append('</tbody></table>')
    if charts:
        out.append('<h2>Charts</h2>')
        out += [f'<p><img src="{quote(chart)}" alt="{esc(chart)}"></p>' for chart in charts]
    if pictures:
        panels = 'prediction' if table is None else \
            f'prediction | ground truth | errors ({ERROR_LEGEND})'
        out += [f'<h2>{esc(pictures_heading)}</h2>',
                f'<p>Panels: {esc(panels)}. Overlapping bones mix their colours.</p>']
        rows = {name: i for i, name in enumerate(table.names)} if table is not None else {}
        for name, picture in pictures.items():
            heading = esc(name)
            if name in rows:
                image_dice = dice[rows[name]]
                weakest = ', '.join(f'{esc(classes[c])} {image_dice[c]:.3f}'
                                    for c in np.argsort(image_dice, kind='stable')[:3])
                heading += f' &mdash; Dice {image_dice.mean():.4f} (weakest: {weakest})'
            # the page shows the picture at its width; a click opens it full size
            out.append(f'<h3>{heading}</h3><p><a href="{quote(picture)}"><img '
                       f'src="{quote(picture)}" alt="{esc(name)}"></a></p>')
    out.append('</body></html>\n')
    return '\n'.join(out)


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
        table = score(submission, index, progress)
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
    page = render_html('Hand-bone segmentation report', facts, table, charts, pictures,
                       heading)
    path = out_dir / REPORT_FILE
    with atomic_open(path, 'w', encoding='utf-8') as f:
        f.write(page)
    return path
