"""The thresholds JSON: per-class thresholds and post-processing rules.

The file carries the per-class post-processing rules (``functional/postprocess.py``) chosen
with the thresholds, so one file describes how probabilities become masks.
"""
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..classes import CLASSES
from ..functional.postprocess import Rule, rules_from_table, rules_to_table
from ..functional.thresholds import check_thresholds
from .atomic import atomic_open


def load_thresholds(path: str | Path, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Read ``{"thresholds": {class: value, ...}}`` (every class, nothing else) in class order.

    Raises:
        ValueError: unreadable JSON, missing or unknown classes, values outside (0, 1).
    """
    path = Path(path)
    try:
        table = json.loads(path.read_text())['thresholds']
        if not isinstance(table, dict):
            raise TypeError('"thresholds" must map class names to values')
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f'{path}: not a thresholds file ({e!r}); expected '
                         '{"thresholds": {"finger-1": 0.5, ...}}') from None
    missing = [c for c in classes if c not in table]
    unknown = sorted(set(table) - set(classes))
    if missing or unknown:
        raise ValueError(f'{path}: thresholds missing for {missing[:3]}, unknown classes '
                         f'{unknown[:3]}')
    try:
        return check_thresholds([float(table[c]) for c in classes], classes, str(path))
    except (TypeError, ValueError) as e:
        raise ValueError(str(e) if str(path) in str(e) else f'{path}: {e}') from None


def load_postprocess(path: str | Path, classes: Sequence[str] = CLASSES) -> list[Rule | None]:
    """Per class the post-processing rule of a thresholds JSON, None where it has none.

    The ``"postprocess"`` section maps class names to ``{"largest": bool, "min_size": int}``;
    a file without it (written before post-processing existed, or with ``--no-postprocess``)
    means none for every class.

    Raises:
        ValueError: unreadable JSON, a class not in ``classes``, wrong types or a negative
            ``min_size``; one line naming the file and the key.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError('the file must hold a JSON object')
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise ValueError(f'{path}: not a thresholds file ({e!r})') from None
    return rules_from_table(data.get('postprocess'), classes, f'{path}: postprocess')


def save_thresholds(path: str | Path, thresholds: Sequence[float],
                    classes: Sequence[str] = CLASSES,
                    postprocess: Sequence[Rule | None] | None = None, **extra: object) -> None:
    """Write the thresholds JSON that ``load_thresholds`` reads, atomically.

    Args:
        path: the JSON file.
        thresholds: one per class in (0, 1).
        classes: the class names, in order.
        postprocess: if given, one rule or None per class, stored as the ``"postprocess"``
            section (classes without a rule are left out) that ``load_postprocess`` reads.
        extra: stored beside them (e.g. the Dice before and after).
    """
    values = check_thresholds(thresholds, classes, str(path))
    if postprocess is not None:
        table = rules_to_table(postprocess, classes, f'{path}: postprocess')
        extra = dict(postprocess=table, **extra)
    with atomic_open(path, 'w') as f:
        json.dump(dict(thresholds={c: round(float(v), 6) for c, v in zip(classes, values)},
                       **extra), f, indent=1)
