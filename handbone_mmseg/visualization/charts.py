"""The report's charts: Dice per class and the spread of Dice over images, as PNG files."""
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..classes import CLASSES, PALETTE
from ..io.atomic import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_figure(figure: 'Figure', path: Path) -> None:
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
    save_figure(figure, Path(path))


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
    save_figure(figure, Path(path))
