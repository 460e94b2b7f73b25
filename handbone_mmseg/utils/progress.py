"""A progress bar for the long tools, drawn only where someone is watching."""
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar('T')


def progress_enabled() -> bool:
    """True when the bar's stream (stderr) is a terminal: never in logs, pipes or CI."""
    return sys.stderr.isatty()


def track(iterable: Iterable[T], total: int | None = None, description: str = '',
          enabled: bool | None = None) -> Iterator[T]:
    """Yield the items of ``iterable``, with a rich progress bar on a terminal.

    The bar goes to stderr, like pip's and tqdm's, so a tool's printed results on stdout stay
    clean when they are piped; where stderr is not a terminal nothing is drawn at all (no
    carriage-return lines in log files).

    Args:
        iterable: the work items; consumed lazily.
        total: the item count, for the bar's length and time left (default ``len()`` when
            the iterable has one).
        description: text left of the bar, e.g. ``'predict'``.
        enabled: force the bar on or off; None decides by ``progress_enabled()``.
    """
    if not (progress_enabled() if enabled is None else enabled):
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    if total is None and hasattr(iterable, '__len__'):
        total = len(iterable)  # type: ignore[arg-type]
    columns = (TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)
