"""The ranked table of suspicious annotations: findings combined per annotation, written as
CSV, and scored against planted errors.

An annotation (image, class) gathers the findings of every rule and of the model
comparison. Per kind its strongest finding counts, and the kinds are combined as
independent pieces of evidence (a noisy-or): ``1 - prod(1 - score)``. Two kinds that agree
raise the score above either; a weak one adds little. Where an out-of-fold model
confidently agrees with the label (``disagreement.model_support``), the rule evidence that
a neighbour's mistake can raise (``findings.MODEL_CHECKED``) is weighed down by that
support: ``score * (1 - support)``.
"""
import csv
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import CLASS_INDEX
from ..io.atomic import atomic_open
from .findings import MODEL_CHECKED, Finding

AUDIT_COLUMNS = ('rank', 'image', 'patient', 'class', 'score', 'kinds', 'partner', 'evidence',
                 'exclude_line')


@dataclass(frozen=True)
class RankedLabel:
    """One annotation of the ranking.

    Attributes:
        rank: 1 for the most suspicious.
        image, patient, cls: the annotation.
        score: the combined score in (0, 1].
        findings: its strongest finding per kind, strongest first.
        labeled: whether the image has a polygon of the class (False: a missing bone).
        support: how confidently an out-of-fold model agrees with the label (0: no model,
            or it disagrees).
    """

    rank: int
    image: str
    patient: str
    cls: str
    score: float
    findings: tuple[Finding, ...]
    labeled: bool = True
    support: float = 0.0

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(f.kind for f in self.findings)

    @property
    def partner(self) -> str | None:
        """The other class of its strongest finding that names one (a likely swap)."""
        return next((f.partner for f in self.findings if f.partner), None)

    @property
    def exclude_line(self) -> str:
        """The line of ``excluded_labels.txt`` that leaves this annotation out of training:
        ``IMAGE CLASS``, or ``IMAGE *`` (the whole image) for a missing bone, which has no
        pixels to leave out."""
        return f'{self.image} {self.cls if self.labeled else "*"}'


def combine(scores: Iterable[float]) -> float:
    """Noisy-or of independent pieces of evidence: ``1 - prod(1 - s)``."""
    return float(1 - np.prod([1 - s for s in scores]))


def rank_findings(findings: Iterable[Finding], patients: Mapping[str, str] | None = None,
                  absent: Collection[tuple[str, str]] = (),
                  support: Mapping[tuple[str, str], float] | None = None
                  ) -> list[RankedLabel]:
    """Annotations by combined score, highest first (ties by image, then class order);
    those whose evidence the model's support cancels are left out.

    Args:
        findings: from ``rules.rule_findings`` and ``disagreement.model_findings``.
        patients: image name -> patient, for the table.
        absent: ``(image, class)`` of the bones the labels lack.
        support: ``(image, class)`` -> the model's confident agreement with the label, in
            [0, 1] (``disagreement.model_support``).
    """
    support = support or {}
    best: dict[tuple[str, str], dict[str, Finding]] = defaultdict(dict)
    for f in findings:
        kinds = best[(f.image, f.cls)]
        if f.kind not in kinds or f.score > kinds[f.kind].score:
            kinds[f.kind] = f
    rows = []
    for (image, cls), kinds in best.items():
        ordered = tuple(sorted(kinds.values(), key=lambda f: -f.score))
        agree = support.get((image, cls), 0.0)
        score = combine(f.score * (1 - agree) if f.kind in MODEL_CHECKED else f.score
                        for f in ordered)
        if score > 0:
            rows.append((score, image, cls, ordered, agree))
    rows.sort(key=lambda r: (-r[0], r[1], CLASS_INDEX[r[2]]))
    patients = patients or {}
    absent = set(absent)
    return [RankedLabel(k, image, patients.get(image, ''), cls, score, ordered,
                        (image, cls) not in absent, agree)
            for k, (score, image, cls, ordered, agree) in enumerate(rows, 1)]


def evidence_lines(row: RankedLabel) -> list[str]:
    """Each finding as ``kind: sentence``, and the model's support where it weighed them."""
    lines = [f'{f.kind}: {f.evidence}' for f in row.findings]
    if row.support > 0 and any(f.kind in MODEL_CHECKED for f in row.findings):
        lines.append(f'the out-of-fold model agrees with the label (support {row.support:.2f}), '
                     f'which weighs down {", ".join(k for k in row.kinds if k in MODEL_CHECKED)}')
    return lines


def audit_rows(ranked: Sequence[RankedLabel]) -> list[dict]:
    """The CSV's rows (``AUDIT_COLUMNS``)."""
    return [dict(rank=r.rank, image=r.image, patient=r.patient, **{'class': r.cls},
                 score=f'{r.score:.4f}', kinds='+'.join(r.kinds), partner=r.partner or '',
                 evidence=' | '.join(evidence_lines(r)), exclude_line=r.exclude_line)
            for r in ranked]


def write_audit_csv(ranked: Sequence[RankedLabel], path: str | Path) -> Path:
    """Write the ranking as CSV (``AUDIT_COLUMNS``), atomically."""
    with atomic_open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, AUDIT_COLUMNS)
        writer.writeheader()
        writer.writerows(audit_rows(ranked))
    return Path(path)


def planted_scores(ranked: Sequence[RankedLabel], planted: Sequence[Mapping],
                   top: int) -> dict:
    """How well the ranking's first ``top`` annotations find planted errors.

    A planted error counts as found when any annotation it touched (both classes of a swap)
    is among the first ``top``; precision is the share of those ``top`` that one touched.

    Args:
        ranked: the ranking.
        planted: ``phantom.read_planted``'s records (``image``, ``kind``, ``classes``).
        top: how many annotations a person would look at.

    Returns:
        ``top``, ``found``, ``planted``, ``recall``, ``precision`` and per kind
        ``{kind: (found, planted)}`` under ``kinds``.
    """
    head = {(r.image, r.cls) for r in ranked[:top]}
    touched = {(e['image'], c) for e in planted for c in e['classes']}
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in planted:
        kinds[e['kind']][1] += 1
        kinds[e['kind']][0] += any((e['image'], c) in head for c in e['classes'])
    found = sum(v[0] for v in kinds.values())
    shown = min(top, len(ranked))
    return dict(top=top, found=found, planted=len(planted),
                recall=found / len(planted) if planted else float('nan'),
                precision=len(head & touched) / shown if shown else float('nan'),
                kinds={k: tuple(v) for k, v in sorted(kinds.items())})
