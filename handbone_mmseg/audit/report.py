"""The data report (a data set's fingerprint, as nnU-Net takes one before planning): what
the images are, what the labels hold, and how train and test differ in pose.

From ``audit.fingerprint``'s facts: images per patient and split, sizes and bit depths,
left and right hands, the wrist angle of train (from the labels) against test (from a
model's probability dump, ``audit.predictions``), per class its area, box, polygons and
points, and which classes overlap, how often and how much. Written as ``report.html``
(rendered like the evaluation report, charts beside it), ``images.csv``, ``classes.csv``,
``overlaps.csv`` and ``summary.json``.
"""
import csv
import html
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import CLASSES
from ..functional.pose import BENT_DEGREES
from ..io.atomic import atomic_open
from ..visualization.html_report import render_html
from .charts import plot_angles, plot_areas, plot_overlaps
from .fingerprint import ImageFacts
from .pages import html_table, with_sections
from .rules import overlap_shares

REPORT_FILE = 'report.html'
ANGLE_CHART, AREA_CHART, OVERLAP_CHART = 'wrist_angles.png', 'class_areas.png', 'overlaps.png'
IMAGE_COLUMNS = ('name', 'patient', 'split', 'height', 'width', 'bit_depth',
                 'significant_bits', 'labeled', 'annotations', 'classes', 'missing', 'side',
                 'angle', 'pose_from')
CLASS_COLUMNS = ('class', 'images', 'missing', 'multi_polygon_images', 'polygons',
                 'points_min', 'points_median', 'points_max', 'area_min', 'area_median',
                 'area_max', 'box_width_median', 'box_height_median')
OVERLAP_COLUMNS = ('class_a', 'class_b', 'images', 'share_of_images', 'pixels_median',
                   'share_of_smaller_median', 'share_of_smaller_max')


@dataclass
class DataReport:
    """The report's tables: rows of the three CSVs and the summary JSON."""

    summary: dict
    images: list[dict]
    classes: list[dict]
    overlaps: list[dict]
    overlap_share: np.ndarray  # (C, C) share of images holding both where they overlap


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float('nan')


def _angle_summary(angles: Sequence[float], source: str, total: int) -> dict:
    a = np.abs(np.asarray(angles, float))
    return dict(source=source, images=total, known=len(a),
                bent_share=float((a >= BENT_DEGREES).mean()) if len(a) else None,
                median_abs=float(np.median(a)) if len(a) else None,
                quartiles=[float(q) for q in np.percentile(angles, [25, 50, 75])]
                if len(a) else None)


def summarise(facts: Sequence[ImageFacts],
              test_poses: Mapping[str, tuple[float, str] | None] | None = None,
              data_root: str = '', probs: Sequence[str] = ()) -> DataReport:
    """The report's tables from the facts (and the test images' predicted poses).

    Args:
        facts: every image of the data set.
        test_poses: per test image ``(angle, side)`` from its predictions, or None.
        data_root, probs: named in the summary.
    """
    test_poses = test_poses or {}
    images = []
    for f in facts:
        pose = (f.angle, f.side) if f.labeled else (test_poses.get(f.name) or (None, None))
        source = 'labels' if f.labeled else 'predictions' if f.name in test_poses else ''
        missing = [CLASSES[c] for c in np.flatnonzero(~f.present)] if f.labeled else []
        images.append(dict(name=f.name, patient=f.patient, split=f.split, height=f.height,
                           width=f.width, bit_depth=f.bit_depth,
                           significant_bits=f.significant_bits, labeled=f.labeled,
                           annotations=int(f.polygons.sum()),
                           classes=int(f.present.sum()) if f.labeled else 0,
                           missing=' '.join(missing), side=pose[1] or '',
                           angle=None if pose[0] is None else round(pose[0], 2),
                           pose_from=source if pose[0] is not None else ''))
    labeled = [f for f in facts if f.labeled]
    classes = []
    n = len(CLASSES)
    for c, name in enumerate(CLASSES):
        has = [f for f in labeled if f.present[c]]
        points = [int(f.points[c]) for f in has]
        areas = [int(f.area[c]) for f in has]
        widths = [int(f.boxes[c, 2] - f.boxes[c, 0]) for f in has]
        heights = [int(f.boxes[c, 3] - f.boxes[c, 1]) for f in has]
        classes.append({'class': name, 'images': len(has), 'missing': len(labeled) - len(has),
                        'multi_polygon_images': int(sum(f.polygons[c] > 1 for f in has)),
                        'polygons': int(sum(f.polygons[c] for f in has)),
                        'points_min': min(points, default=0), 'points_median': _median(points),
                        'points_max': max(points, default=0), 'area_min': min(areas, default=0),
                        'area_median': _median(areas), 'area_max': max(areas, default=0),
                        'box_width_median': _median(widths),
                        'box_height_median': _median(heights)})
    pixels: dict[tuple[int, int], list[int]] = {}
    shares: dict[tuple[int, int], list[float]] = {}
    both = np.zeros((n, n))
    for f in labeled:
        both += np.outer(f.present, f.present)
        for pair, share in overlap_shares(f).items():
            pixels.setdefault(pair, []).append(f.overlaps[pair])
            shares.setdefault(pair, []).append(share)
    overlap_share = np.zeros((n, n))
    overlaps = []
    for (i, j) in sorted(pixels):
        share_of_images = len(pixels[(i, j)]) / max(1.0, both[i, j])
        overlap_share[i, j] = overlap_share[j, i] = share_of_images
        overlaps.append(dict(class_a=CLASSES[i], class_b=CLASSES[j], images=len(pixels[(i, j)]),
                             share_of_images=round(share_of_images, 4),
                             pixels_median=_median(pixels[(i, j)]),
                             share_of_smaller_median=round(_median(shares[(i, j)]), 4),
                             share_of_smaller_max=round(max(shares[(i, j)]), 4)))
    overlaps.sort(key=lambda r: (-r['images'], r['class_a'], r['class_b']))
    summary = _summary(facts, images, test_poses, data_root, probs)
    summary.update(classes=classes, overlaps=overlaps)
    return DataReport(summary, images, classes, overlaps, overlap_share)


def _summary(facts: Sequence[ImageFacts], images: list[dict],
             test_poses: Mapping[str, object], data_root: str, probs: Sequence[str]) -> dict:
    splits = {}
    for split in sorted({f.split for f in facts}, key=['train', 'test'].index):
        mine = [f for f in facts if f.split == split]
        per_patient = Counter(Counter(f.patient for f in mine).values())
        rows = [r for r in images if r['split'] == split]
        angles = [r['angle'] for r in rows if r['angle'] is not None]
        source = 'labels' if split == 'train' else 'predictions' if test_poses else 'none'
        splits[split] = dict(
            images=len(mine), labeled=sum(f.labeled for f in mine),
            patients=len({f.patient for f in mine}),
            images_per_patient={str(k): v for k, v in sorted(per_patient.items())},
            sizes=dict(Counter(f'{f.width}x{f.height}' for f in mine)),
            bit_depths=dict(Counter(str(f.bit_depth) for f in mine)),
            sides=dict(Counter(r['side'] or 'unknown' for r in rows)),
            wrist_angle=_angle_summary(angles, source, len(mine)))
    labeled = [f for f in facts if f.labeled]
    return dict(data_root=data_root, probs=list(probs), bent_degrees=BENT_DEGREES,
                splits=splits,
                annotations=dict(polygons=int(sum(f.polygons.sum() for f in labeled)),
                                 absent=int(sum((~f.present).sum() for f in labeled)),
                                 multi_polygon=int(sum((f.polygons > 1).sum() for f in labeled))))


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    with atomic_open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _facts_lines(report: DataReport) -> list[tuple[str, str]]:
    lines = [('data root', report.summary['data_root'])]
    for split, s in report.summary['splits'].items():
        per = ', '.join(f'{v} with {k}' for k, v in s['images_per_patient'].items())
        lines.append((f'{split} images', f'{s["images"]} ({s["labeled"]} labeled) of '
                                         f'{s["patients"]} patients ({per})'))
        sizes = ', '.join(f'{k}: {v}' for k, v in s['sizes'].items())
        bits = ', '.join(f'{k} bits: {v}' for k, v in s['bit_depths'].items())
        lines.append((f'{split} sizes and bit depths', f'{sizes}; {bits}'))
        sides = ', '.join(f'{k}: {v}' for k, v in sorted(s['sides'].items()))
        lines.append((f'{split} hands', sides))
        w = s['wrist_angle']
        if w['known']:
            lines.append((f'{split} wrist angle (from {w["source"]})',
                          f'{w["bent_share"]:.0%} bent (|angle| >= {BENT_DEGREES:g}°) of '
                          f'{w["known"]} images; median |angle| {w["median_abs"]:.1f}°'))
        elif split == 'test':
            lines.append(('test wrist angle', 'unknown: give a probability dump of the test '
                          'images (--probs) to measure it from the predictions'))
    a = report.summary['annotations']
    lines.append(('annotations', f'{a["polygons"]} polygons; {a["absent"]} absent classes; '
                                 f'{a["multi_polygon"]} classes drawn as several polygons'))
    if report.summary['probs']:
        lines.append(('test poses from', ', '.join(report.summary['probs'])))
    return lines


def write_data_report(report: DataReport, facts: Sequence[ImageFacts],
                      out_dir: str | Path) -> Path:
    """Write the CSVs, ``summary.json``, the charts and ``report.html`` into ``out_dir``.

    Returns:
        The path of ``report.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / 'images.csv', IMAGE_COLUMNS, report.images)
    _write_csv(out / 'classes.csv', CLASS_COLUMNS, report.classes)
    _write_csv(out / 'overlaps.csv', OVERLAP_COLUMNS, report.overlaps)
    with atomic_open(out / 'summary.json', 'w', encoding='utf-8') as f:
        json.dump(report.summary, f, indent=1)
    angles = {}
    for split, source in (('train', 'labels'), ('test', 'predictions')):
        values = [r['angle'] for r in report.images
                  if r['split'] == split and r['angle'] is not None]
        if values:
            angles[f'{split} ({source})'] = np.asarray(values)
    plot_angles(angles, BENT_DEGREES, out / ANGLE_CHART)
    labeled = [f for f in facts if f.labeled]
    plot_areas([np.array([f.area[c] for f in labeled]) for c in range(len(CLASSES))],
               out / AREA_CHART)
    plot_overlaps(report.overlap_share, out / OVERLAP_CHART)
    page = render_html('Hand-bone data report', _facts_lines(report), None,
                       [ANGLE_CHART, AREA_CHART, OVERLAP_CHART], {})
    class_rows = [[r[k] for k in CLASS_COLUMNS] for r in report.classes]
    overlap_rows = [[r[k] for k in OVERLAP_COLUMNS] for r in report.overlaps]
    odd = [r for r in report.images if r['labeled'] and (r['missing'] or r['annotations'] >
                                                         r['classes'] or not r['pose_from'])]
    sections = [
        '<h2>Per class</h2><p>Areas in pixels of the filled polygons (as training '
        'rasterises them), boxes in pixels; medians over the images that label the class.</p>',
        html_table(CLASS_COLUMNS, class_rows, 'class-stats'),
        '<h2>Overlapping classes</h2><p>Pairs that share pixels in at least one image: in how '
        'many, and how much (shared pixels over the smaller bone\'s).</p>',
        html_table(OVERLAP_COLUMNS, overlap_rows, 'overlaps'),
        f'<h2>Labeled images to look at ({len(odd)})</h2><p>A class absent, a class drawn as '
        'several polygons, or no pose (a bone the wrist angle needs is absent). '
        '<code>tools/audit_labels.py</code> ranks every annotation.</p>',
        html_table(('name', 'patient', 'annotations', 'classes', 'missing'),
                   [[r['name'], r['patient'], r['annotations'], r['classes'], r['missing']]
                    for r in odd[:200]], 'odd-images'),
        f'<p>Tables as CSV: <a href="images.csv">images.csv</a>, <a href="classes.csv">'
        f'classes.csv</a>, <a href="overlaps.csv">overlaps.csv</a>, <a href="summary.json">'
        f'summary.json</a>. {html.escape(str(len(report.images)))} images.</p>',
    ]
    path = out / REPORT_FILE
    with atomic_open(path, 'w', encoding='utf-8') as f:
        f.write(with_sections(page, sections))
    return path
