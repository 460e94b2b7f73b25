"""The data report's charts: wrist angles of train against test, bone areas, which bones
overlap; PNG files written as the evaluation report's charts are."""
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..classes import CLASSES, PALETTE
from ..visualization.charts import save_figure


def plot_angles(angles: dict[str, np.ndarray], bent: float, path: str | Path) -> None:
    """Histograms of the wrist angle per split (share of that split's images), the bent
    range shaded; an 800x400 PNG.

    Args:
        angles: split label (e.g. ``'train (labels)'``) -> angles in degrees.
        bent: the angle from which a wrist counts as bent (either way).
    """
    from matplotlib.figure import Figure
    figure = Figure(figsize=(8, 4), dpi=100)
    ax = figure.subplots()
    values = [v for v in angles.values() if len(v)]
    top = max([60.0] + [float(np.abs(v).max()) + 5 for v in values])
    bins = np.arange(-np.ceil(top / 5) * 5, np.ceil(top / 5) * 5 + 5, 5)
    for label, v in angles.items():
        if len(v):
            share = float((np.abs(v) >= bent).mean())
            ax.hist(v, bins=bins, weights=np.full(len(v), 1 / len(v)), histtype='step',
                    linewidth=2, label=f'{label}: {len(v)} images, {share:.0%} bent')
    ax.axvspan(bins[0], -bent, color='grey', alpha=0.12)
    ax.axvspan(bent, bins[-1], color='grey', alpha=0.12, label=f'bent (|angle| >= {bent:g}°)')
    ax.set_xlabel('wrist angle, degrees (middle finger against the forearm)')
    ax.set_ylabel('share of the split\'s images')
    ax.legend(loc='upper left', fontsize=8)
    figure.tight_layout()
    save_figure(figure, Path(path))


def plot_areas(areas: Sequence[np.ndarray], path: str | Path,
               classes: Sequence[str] = CLASSES,
               palette: Sequence[Sequence[int]] = PALETTE) -> None:
    """One box plot per class of its area in pixels over the images (log axis), in the
    class's colour; an 800x800 PNG."""
    from matplotlib.figure import Figure
    figure = Figure(figsize=(8, 8), dpi=100)
    ax = figure.subplots()
    data = [np.asarray(a, float)[np.asarray(a) > 0] for a in areas]
    boxes = ax.boxplot([d if len(d) else [np.nan] for d in data], vert=False,
                       patch_artist=True, widths=0.6, flierprops=dict(markersize=3),
                       medianprops=dict(color='black'))
    for patch, colour in zip(boxes['boxes'], palette):
        patch.set_facecolor(np.asarray(colour) / 255)
    ax.set_yticks(np.arange(1, len(classes) + 1), classes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale('log')
    ax.set_xlabel('area of the filled polygons, pixels')
    ax.grid(axis='x', alpha=0.3)
    figure.tight_layout()
    save_figure(figure, Path(path))


def plot_overlaps(share: np.ndarray, path: str | Path, classes: Sequence[str] = CLASSES) -> None:
    """A class x class map of the share of images where two bones overlap, each non-zero
    cell labeled with its percentage; an 800x800 PNG."""
    from matplotlib.figure import Figure
    figure = Figure(figsize=(8, 8), dpi=100)
    ax = figure.subplots()
    from matplotlib import colormaps
    # pairs that never overlap: blank, so that the few that do stand out
    cmap = colormaps['YlOrRd'].with_extremes(bad='white')
    image = ax.imshow(np.ma.masked_equal(share, 0), cmap=cmap, vmin=0, vmax=1)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=90, fontsize=7)
    ax.set_yticks(ticks, classes, fontsize=7)
    ax.set_xticks(ticks - 0.5, minor=True)
    ax.set_yticks(ticks - 0.5, minor=True)
    ax.grid(which='minor', color='#ddd', linewidth=0.5)
    ax.tick_params(which='minor', length=0)
    for i, j in np.argwhere(share > 0):
        ax.text(j, i, f'{100 * share[i, j]:.0f}', ha='center', va='center', fontsize=5,
                color='white' if share[i, j] > 0.6 else 'black')
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                    label='share of the images holding both where they overlap')
    figure.tight_layout()
    save_figure(figure, Path(path))
