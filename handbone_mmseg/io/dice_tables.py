"""Per-class Dice tables: one row per class and a mean row, as CSV files and console text.

The same rows serve the metric's log and ``dice_per_class.csv``, ``tools/ensemble.py``'s
model-by-model table and ``tools/tune_thresholds.py``'s before/after tables.
"""
import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from prettytable import PrettyTable

from ..classes import CLASSES
from .atomic import atomic_open


def class_rows(classes: Sequence[str], columns: Sequence[Sequence[float | str]],
               digits: int = 4, mean: bool = True) -> list[list[str]]:
    """Per class its name and each column's value, then (if ``mean``) the column means.

    Args:
        classes: the class names, one row each.
        columns: one value per class each; numbers are written to ``digits`` decimals,
            strings (a rule, a formatted gain) as they are.
        digits: decimals of the numbers.
        mean: add a ``mean`` row (the columns must then hold numbers).
    """
    def cell(value: float | str) -> str:
        return value if isinstance(value, str) else f'{value:.{digits}f}'

    rows = [[name, *(cell(col[c]) for col in columns)] for c, name in enumerate(classes)]
    if mean:
        rows.append(['mean', *(cell(float(np.mean(col))) for col in columns)])
    return rows


def class_table(classes: Sequence[str], header: Sequence[str],
                columns: Sequence[Sequence[float | str]], mean: bool = True) -> PrettyTable:
    """``class_rows`` to 4 decimals as a console table headed ``Class, *header``."""
    table = PrettyTable(['Class', *header])
    for row in class_rows(classes, columns, 4, mean):
        table.add_row(row)
    return table


def write_class_dice(path: str | Path, classes: Sequence[str], header: Sequence[str],
                     columns: Sequence[Sequence[float]]) -> None:
    """``class_rows`` to 6 decimals with the mean row as CSV headed ``class, *header``,
    atomically (what ``read_class_dice`` reads)."""
    with atomic_open(path, 'w', newline='') as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(['class', *header])
        writer.writerows(class_rows(classes, columns, 6))


def read_class_dice(path: str | Path, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Per-class Dice from a ``dice_per_class.csv`` of ``tools/test.py --split val --out``.

    Raises:
        ValueError: unreadable file or classes other than ``classes`` in order.
    """
    try:
        with open(path, newline='') as f:
            rows = [row for row in csv.reader(f)][1:]
        table = {row[0]: float(row[1]) for row in rows if row and row[0] != 'mean'}
    except (OSError, ValueError, IndexError) as e:
        raise ValueError(f'{path}: not a per-class Dice table ({e})') from None
    if list(table) != list(classes):
        raise ValueError(f'{path}: lists classes {list(table)[:3]}..., expected the '
                         f'{len(classes)} classes in order')
    return np.array(list(table.values()))
