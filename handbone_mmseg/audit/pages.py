"""HTML pieces for the data report and the audit page, on top of the evaluation report's
page (``visualization.html_report.render_html``: the same style, facts, colour legend and
charts); sections are added before its end."""
import base64
import html
from collections.abc import Sequence

import cv2
import numpy as np

_END = '</body></html>'


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
               table_id: str | None = None) -> str:
    """A table; numbers are right-aligned, floats shown with 4 significant digits."""
    def cell(value: object) -> str:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return f'<td class="num">{value}</td>'
        if isinstance(value, (float, np.floating)):
            return f'<td class="num">{value:.4g}</td>'
        return f'<td>{html.escape(str(value))}</td>'

    ident = f' id="{html.escape(table_id)}"' if table_id else ''
    head = ''.join(f'<th>{html.escape(h)}</th>' for h in headers)
    body = '\n'.join('<tr>' + ''.join(cell(v) for v in row) + '</tr>' for row in rows)
    return f'<table{ident}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def with_sections(page: str, sections: Sequence[str]) -> str:
    """``page`` (from ``render_html``) with ``sections`` (HTML) added at its end."""
    at = page.rindex(_END)
    return page[:at] + '\n'.join(sections) + '\n' + page[at:]


def png_data_uri(image: np.ndarray) -> str:
    """An (H, W, 3) uint8 RGB image as a ``data:image/png;base64,...`` URI, to embed in a
    page that then needs no files beside it."""
    ok, data = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError(f'PNG encoding failed for an image of {image.shape}')
    return 'data:image/png;base64,' + base64.b64encode(data.tobytes()).decode('ascii')
