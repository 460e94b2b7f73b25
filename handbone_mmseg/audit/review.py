"""The audit page: the most suspicious annotations, each with a picture of the label and the
prediction side by side and its evidence, to confirm or dismiss in seconds.

Each case shows a crop around the bone (and the other bone of a likely swap, and where the
model puts it): the X-ray | the out-of-fold prediction | the label, in the report's palette
and with the class names written on the bones (``visualization.overlay.draw_panels``). The
pictures are small PNGs embedded in the page, which therefore opens anywhere on its own.
Ticking "wrong" on a case adds its line to the box at the top, ready to save as
``DATA_ROOT/excluded_labels.txt`` (docs/audit.md).
"""
import html
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from ..classes import CLASS_INDEX, CLASSES, PALETTE
from ..functional.box_masks import Box, BoxMasks, union_box, window
from ..io.images import read_image
from ..utils.progress import track
from ..visualization.html_report import render_html
from ..visualization.overlay import draw_panels
from .fingerprint import ImageFacts
from .pages import html_table, png_data_uri, with_sections
from .predictions import Predictions
from .rank import RankedLabel, evidence_lines

PANEL = 200     # pixels: the longer side of each panel of a case's picture
MARGIN = 0.35   # the crop reaches this share of the bones' box beyond it on every side

_SCRIPT = """
<script>
function collect() {
  const lines = [];
  document.querySelectorAll('input.wrong:checked').forEach(box => lines.push(box.dataset.line));
  document.getElementById('excluded').value = lines.join('\\n') + (lines.length ? '\\n' : '');
}
document.querySelectorAll('input.wrong').forEach(box => box.addEventListener('change', collect));
</script>
"""
_CASE_STYLE = """<style>
.case { border-top: 1px solid #bbb; padding: 6px 0 12px; }
.case ul { margin: 4px 0; }
textarea { width: 100%; font-family: monospace; }
</style>"""


def _to_box(xyxy: np.ndarray) -> Box:
    """``x0, y0, x1, y1`` as ``y0, y1, x0, x1``."""
    x0, y0, x1, y1 = (int(v) for v in xyxy)
    return (y0, y1, x0, x1)


def case_region(facts: ImageFacts, row: RankedLabel,
                predictions: Predictions | None) -> Box:
    """The crop of a case, in original pixels: the annotation's box, its partner's and the
    predicted bone's, widened by ``MARGIN``; the whole hand where none of them exists."""
    boxes = [_to_box(facts.boxes[CLASS_INDEX[name]]) for name in (row.cls, row.partner)
             if name is not None and facts.present[CLASS_INDEX[name]]]
    if predictions is not None and row.image in predictions.holders:
        box, _ = predictions.class_probs(row.image)[CLASS_INDEX[row.cls]]
        h, w = predictions.stored_shape(row.image)
        sy, sx = facts.height / h, facts.width / w
        boxes.append((int(box[0] * sy), int(np.ceil(box[1] * sy)), int(box[2] * sx),
                      int(np.ceil(box[3] * sx))))
    y0, y1, x0, x1 = union_box(boxes)
    if y0 >= y1 or x0 >= x1:
        y0, y1, x0, x1 = union_box([_to_box(b) for b in facts.boxes[facts.present]])
    pad = int(MARGIN * max(y1 - y0, x1 - x0)) + 4
    return (max(0, y0 - pad), min(facts.height, y1 + pad),
            max(0, x0 - pad), min(facts.width, x1 + pad))


def case_picture(image: np.ndarray, facts: ImageFacts, region: Box,
                 predictions: Predictions | None) -> np.ndarray:
    """X-ray | prediction | label of ``region`` (without a prediction: X-ray | label), each
    panel ``PANEL`` pixels on its longer side; (h, k * w, 3) uint8 RGB."""
    y0, y1, x0, x1 = region
    labels = BoxMasks.from_polygons(facts.labels, (facts.height, facts.width), len(CLASSES))
    gt = np.stack([window(crop, region, box) for crop, box in zip(labels.crops, labels.boxes)])
    factor = PANEL / max(y1 - y0, x1 - x0)
    size = (max(1, round((y1 - y0) * factor)), max(1, round((x1 - x0) * factor)))
    crop = cv2.resize(image[y0:y1, x0:x1], size[::-1],
                      interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    gt = np.stack([cv2.resize(m.view(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST)
                   for m in gt]).astype(bool)
    panels = [crop]
    if predictions is not None and facts.name in predictions.holders:
        # drawn alone, not as draw_panels' error map: the soft edges of any model outline
        # every bone in it, which hides the one difference a person looks for
        pred = predictions.masks_in(facts.name, region, size)
        panels.append(draw_panels(crop, pred, None, PALETTE, CLASSES))
    panels.append(draw_panels(crop, None, gt, PALETTE, CLASSES))
    return np.concatenate(panels, axis=1)


def _case_html(row: RankedLabel, picture: str, panels: str) -> str:
    esc = html.escape
    partner = f', with {esc(row.partner)}' if row.partner else ''
    scores = [f'{f.score:.2f}' for f in row.findings] + [''] * 2
    evidence = ''.join(f'<li>{esc(line)}{f" ({score})" if score else ""}</li>'
                       for line, score in zip(evidence_lines(row), scores))
    line = esc(f'{row.exclude_line}  # audit rank {row.rank}: {"+".join(row.kinds)}')
    return (f'<div class="case" id="case{row.rank}"><h3>{row.rank}. {esc(row.image)} '
            f'({esc(row.patient)}) &mdash; {esc(row.cls)}{partner}: score {row.score:.3f}</h3>'
            f'<ul>{evidence}</ul><p><img src="{picture}" alt="{esc(row.exclude_line)}" '
            f'title="{esc(panels)}"></p><label><input type="checkbox" class="wrong" '
            f'data-line="{line}"> wrong: leave out of training</label></div>')


def render_audit_page(ranked: Sequence[RankedLabel], facts: Mapping[str, ImageFacts],
                      predictions: Predictions | None, top: int,
                      lines: Sequence[tuple[str, str]], progress: bool = False) -> str:
    """The audit page's HTML for the first ``top`` annotations of ``ranked``.

    Args:
        facts: image name -> facts (with its labels).
        predictions: the out-of-fold dumps, or None (rules alone).
        lines: ``(label, value)`` facts for the page's head.
    """
    shown = list(ranked[:top])
    panels = 'X-ray | prediction | label' if predictions is not None else 'X-ray | label'
    by_image: dict[str, list[RankedLabel]] = {}
    for row in shown:
        by_image.setdefault(row.image, []).append(row)
    pictures = {}
    for name, rows in track(by_image.items(), description='pictures',
                            enabled=None if progress else False):
        f = facts[name]
        image = cv2.cvtColor(read_image(f.img_path)[0], cv2.COLOR_BGR2RGB)  # once per image
        for row in rows:
            region = case_region(f, row, predictions)
            pictures[row.rank] = png_data_uri(case_picture(image, f, region, predictions))
    cases = [_case_html(row, pictures[row.rank], panels) for row in shown]
    table = html_table(('rank', 'image', 'class', 'score', 'evidence', 'partner'),
                       [[r.rank, r.image, r.cls, round(r.score, 4), '+'.join(r.kinds),
                         r.partner or ''] for r in shown], 'ranking')
    page = render_html('Hand-bone label audit', lines, None, [], {})
    how = (f'<h2>The {len(shown)} most suspicious annotations</h2><p>Pictures: {panels}; '
           'overlapping bones mix their colours. Tick <i>wrong</i> where the label is wrong; '
           'the lines below collect the ticked ones. Save them as '
           '<code>DATA_ROOT/excluded_labels.txt</code> (one <code>image class</code> per '
           'line, <code>#</code> starts a comment) and training leaves those annotations '
           'out (docs/audit.md). Every annotation, ranked, is in <code>audit.csv</code>.</p>'
           '<textarea id="excluded" rows="6" readonly></textarea>')
    return with_sections(page, [_CASE_STYLE, how, table, *cases, _SCRIPT])
