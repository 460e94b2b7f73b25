"""The report's per-class chart shows every bar from 0, each with its value."""
import numpy as np

from handbone_mmseg.classes import NUM_CLASSES
from handbone_mmseg.visualization import charts


def test_every_bar_shows_with_its_value(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(charts, 'save_figure', lambda figure, path: figures.append(figure))
    per_class = np.full(NUM_CLASSES, 0.97)
    per_class[3] = 0.51  # an empty bar on the old axis, which started at 0.5
    charts.plot_class_dice(per_class, tmp_path / 'chart.png')
    (ax, ) = figures[0].axes
    assert ax.get_xlim()[0] == 0
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == list(per_class)
    labels = [text.get_text() for text in ax.texts]
    assert labels[3] == '0.5100' and labels.count('0.9700') == NUM_CLASSES - 1
