"""The report's HTML page: facts, the per-class table, charts and pictures."""
import html
from collections.abc import Sequence
from urllib.parse import quote

import numpy as np

from ..classes import CLASSES, PALETTE
from ..evaluation.scoring import DiceTable
from .overlay import ERROR_LEGEND

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
                palette: Sequence[Sequence[int]] = PALETTE,
                links: dict[str, str] | None = None) -> str:
    """The report page: facts, per-class table (Dice when labeled), charts, pictures.

    Args:
        title: page heading.
        facts: ``(label, value)`` lines shown under the heading.
        table: Dice of the submission, or None for unlabeled data (the table is then the
            colour legend alone).
        charts: chart files, relative to the page.
        pictures: image name -> picture file relative to the page.
        pictures_heading: the heading above the pictures.
        links: image name -> an address to open it at (the viewer's), beside its heading.
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
            if links and name in links:
                heading += f' <a class="viewer" href="{esc(links[name])}">open in the viewer</a>'
            # the page shows the picture at its width; a click opens it full size
            out.append(f'<h3>{heading}</h3><p><a href="{quote(picture)}"><img '
                       f'src="{quote(picture)}" alt="{esc(name)}"></a></p>')
    out.append('</body></html>\n')
    return '\n'.join(out)
