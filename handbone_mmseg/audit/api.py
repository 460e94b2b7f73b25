"""The typed functions behind ``tools/analyze_data.py`` and ``tools/audit_labels.py``: a
notebook gets what the command line gets.

Both check their inputs before the work (the data folders, the output folder, every
probability dump's index, classes and image names) and never write into the data root.
"""
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import CLASSES
from ..io.atomic import atomic_open, probe_write
from ..io.images import DATASET_SUFFIXES
from ..io.layout import find_files
from .disagreement import (
    class_medians,
    compare_all,
    model_findings,
    model_support,
    write_agreements,
)
from .findings import MODEL_KINDS, RULE_KINDS
from .fingerprint import ImageFacts, collect_facts, data_sources, label_infos
from .predictions import Predictions
from .rank import RankedLabel, rank_findings, write_audit_csv
from .report import DataReport, summarise, write_data_report
from .review import render_audit_page
from .rules import LabelStats, rule_findings

AUDIT_CSV, AUDIT_PAGE, AGREEMENT_CSV = 'audit.csv', 'audit.html', 'agreement.csv'
# below this median class Dice of the out-of-fold models, the audit page warns that their
# disagreement is mostly their own error (bench_audit: a 0.33 model lowered the recall)
WEAK_MODEL_DICE = 0.8


def check_out_dir(out_dir: str | Path, data_root: str | Path) -> Path:
    """Create ``out_dir`` and prove it writable; refuse one inside the data root.

    Raises:
        ValueError: ``out_dir`` is the data root or lies inside it.
        OSError: it cannot be created or written.
    """
    out, root = Path(out_dir), Path(data_root)
    resolved, data = out.resolve(), root.resolve()
    if resolved == data or data in resolved.parents:
        raise ValueError(f'{out}: lies inside the data root {root}; the data tools never write '
                         'there, choose an --out outside it')
    out.mkdir(parents=True, exist_ok=True)
    probe_write(out)
    return out


def _names(folder: Path) -> dict[str, None]:
    """The image file names under ``folder`` (found as the loader finds them)."""
    return {p.name: None for p in find_files(folder, DATASET_SUFFIXES, 'image').values()}


def analyze_data(data_root: str | Path, out_dir: str | Path, probs: Sequence[str | Path] = (),
                 workers: int | None = None, progress: bool = False,
                 img_dir: str = 'train/DCM', ann_dir: str = 'train/outputs_json',
                 test_dir: str = 'test/DCM') -> tuple[Path, DataReport]:
    """Write the data report of ``data_root`` into ``out_dir`` (``audit.report``).

    Args:
        data_root: the data folder (docs/format.md); ``img_dir``, ``ann_dir`` and
            ``test_dir`` lie under it (the test folder may be absent).
        out_dir: where the report goes; not inside ``data_root``.
        probs: probability dumps of the test images (``tools/test.py --save-probs``), for
            their wrist angles and sides.
        workers: processes reading the labels (None: up to 4 cores, by the image count).
        progress: progress bars on a terminal.

    Returns:
        ``(report.html path, the report's tables)``.

    Raises:
        FileNotFoundError, AnnotationError, ProbDumpError, ValueError: bad input, one line
            naming the file.
    """
    sources = data_sources(data_root, img_dir, ann_dir, test_dir)
    out = check_out_dir(out_dir, data_root)
    predictions = None
    if probs:
        test = [s for s in sources if s.split == 'test']
        if not test:
            raise FileNotFoundError(f'{Path(data_root) / test_dir}: no test images for the '
                                    'probability dumps')
        predictions = Predictions(probs)
        predictions.check_images(_names(Path(test[0].img_root)), test[0].img_root)
    facts = collect_facts(sources, workers, progress)
    poses = None
    if predictions is not None:
        tests = {f.name: (f.height, f.width) for f in facts if f.split == 'test'}
        predictions.check_images(tests, str(Path(data_root) / test_dir))
        poses = {name: predictions.pose(name) for name in predictions.names}
    report = summarise(facts, poses, str(data_root), [str(p) for p in probs])
    return write_data_report(report, facts, out), report


@dataclass
class AuditResult:
    """What ``audit_labels`` found and wrote.

    Attributes:
        ranked: every suspicious annotation, most suspicious first.
        facts: the images' facts (labels included).
        stats: the data set's habits the rules measured against.
        csv, page: the written ``audit.csv`` and ``audit.html``.
    """

    ranked: list[RankedLabel]
    facts: list[ImageFacts]
    stats: LabelStats
    csv: Path
    page: Path


def audit_labels(data_root: str | Path, out_dir: str | Path,
                 oof: Sequence[str | Path] = (), top: int = 50, workers: int | None = None,
                 progress: bool = False, img_dir: str = 'train/DCM',
                 ann_dir: str = 'train/outputs_json') -> AuditResult:
    """Rank the labeled annotations of ``data_root`` by suspicion; write ``audit.csv`` and
    ``audit.html`` (the first ``top``) into ``out_dir``.

    Args:
        data_root: the data folder; ``img_dir`` and ``ann_dir`` under it.
        out_dir: where the outputs go; not inside ``data_root``.
        oof: out-of-fold probability dumps of the labeled images (each image predicted by
            a model that did not train on it: every fold's ``tools/test.py --split val
            --save-probs``, or a recipe's pooled dump); none: the anatomy rules alone.
        top: annotations shown on the page.
        workers: processes (None: up to 4 cores, by the image count).
        progress: progress bars on a terminal.

    Raises:
        FileNotFoundError, AnnotationError, ProbDumpError, ValueError: bad input, one line
            naming the file.
    """
    if top < 1:
        raise ValueError(f'top must be at least 1, got {top}')
    sources = data_sources(data_root, img_dir, ann_dir, test_dir=None)
    out = check_out_dir(out_dir, data_root)
    predictions, support = None, {}
    if oof:
        predictions = Predictions(oof)
        predictions.check_images(_names(Path(sources[0].img_root)), sources[0].img_root)
    facts = collect_facts(sources, workers, progress)
    found, stats = rule_findings(facts)
    lines = [('data root', str(data_root)),
             ('labeled images', f'{stats.n_images}, {sum(int(f.polygons.sum()) for f in facts)} '
                                'annotations'),
             ('evidence', f'anatomy rules ({", ".join(RULE_KINDS)})' +
              (f' and out-of-fold predictions ({", ".join(MODEL_KINDS)})' if oof else
               '; no out-of-fold predictions given (--oof)'))]
    if not stats.enough:
        lines.append(('note', f'only {stats.n_images} labeled images: the rules that compare '
                              'an image with the others need 8 or more and stayed silent'))
    if predictions is not None:
        infos = label_infos(facts)
        predictions.check_images({n: i['ori_shape'] for n, i in infos.items()},
                                 sources[0].img_root)
        agreements = compare_all(predictions, infos, workers, progress)
        write_agreements(agreements, out / AGREEMENT_CSV)
        found += model_findings(agreements)
        support = model_support(agreements)
        lines.append(('out-of-fold dumps', f'{", ".join(str(p) for p in oof)}: '
                                           f'{len(agreements)} of {stats.n_images} images'))
        agree = float(np.median(class_medians(agreements)[0]))
        if agree < WEAK_MODEL_DICE:
            # measured (benchmarks/README.md): a model this far from the labels ranks noise
            # above real errors, and the rules alone found more
            lines.append(('warning', f'the out-of-fold models agree with the labels at a '
                                     f'median class Dice of {agree:.2f}: their disagreement '
                                     'says little; audit with better-trained fold models, or '
                                     'without --oof'))
    absent = {(f.name, CLASSES[c]) for f in facts if f.labeled for c in np.flatnonzero(~f.present)}
    ranked = rank_findings(found, {f.name: f.patient for f in facts}, absent, support)
    csv_path = write_audit_csv(ranked, out / AUDIT_CSV)
    page = render_audit_page(ranked, {f.name: f for f in facts}, predictions, top, lines,
                             progress)
    page_path = out / AUDIT_PAGE
    with atomic_open(page_path, 'w', encoding='utf-8') as f:
        f.write(page)
    return AuditResult(ranked, facts, stats, csv_path, page_path)
