"""List every problem of a submission CSV (format in docs/format.md), streaming.

Memory stays flat however long a field: lines are read a piece at a time, and an RLE field
longer than a piece is checked as it is read (``RleParser``) and never held whole.
"""
import csv
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..classes import CLASSES
from ..functional.rle import RleParser
from ..io.images import DATASET_SUFFIXES, find_images
from ..io.submission import SUBMISSION_HEADER
from ..utils.progress import track

_LISTED_NAMES = 5  # names shown per missing/unexpected image list
_PIECE = 1 << 20  # characters read at a time; a longer line has its RLE field streamed


@dataclass
class _Block:
    """Consecutive rows of one image."""

    image: str
    line_no: int
    class_lines: dict[str, int] = field(default_factory=dict)  # line of each known class
    # Class index of the previous row: each step back is reported once, so one class moved
    # early or late gives one line, not one per class it jumped over.
    previous: int = -1


def check_submission(path: str | Path, test_dir: str | Path | None = None,
                     shape: tuple[int, int] = (2048, 2048),
                     classes: tuple[str, ...] = CLASSES, max_problems: int = 50,
                     progress: bool = False) -> list[str]:
    """List the problems of a submission CSV, one line each (``inspect_submission``)."""
    return inspect_submission(path, test_dir, shape, classes, max_problems, progress)[0]


def inspect_submission(path: str | Path, test_dir: str | Path | None = None,
                       shape: tuple[int, int] = (2048, 2048),
                       classes: tuple[str, ...] = CLASSES, max_problems: int = 50,
                       progress: bool = False) -> tuple[list[str], int]:
    """List the problems of a submission CSV, one line each, not stopping at the first.

    Unlike ``iter_submission`` it goes on after a problem, and it checks RLE strings on their
    numbers alone, so memory stays flat however large the file and the images are.

    Args:
        path: the submission CSV.
        test_dir: if given, the CSV must name exactly the images that the data set finds
            under it (``io.images.find_images``: PNG and DICOM, any case), by base name.
        shape: ``(H, W)`` of every image; runs must end within ``H * W`` pixels.
        classes: class names, in the order of each image's rows.
        max_problems: problems listed; the rest are only counted, in one last line.
        progress: count the rows read on a progress bar (only where stderr is a terminal).

    Returns:
        Problem lines starting with ``{path}:{line_no}:``, or ``{path}:`` for the whole file
        (an empty list for a valid submission), and the number of images the CSV names.

    Raises:
        ValueError: ``shape`` is not two positive sizes, ``classes`` is empty or
            ``max_problems`` is below 1.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f'shape must be two positive sizes (H, W), got {shape}')
    if not classes:
        raise ValueError('classes must name at least one class, got none')
    if max_problems < 1:
        raise ValueError(f'max_problems must be at least 1, got {max_problems}')
    path = Path(path)
    problems: list[str] = []
    skipped = 0
    names: set[str] = set()
    for problem in _iter_problems(path, test_dir, shape, classes, progress, names):
        if len(problems) < max_problems:
            problems.append(problem)
        else:
            skipped += 1
    if skipped:
        problems.append(f'{path}: {_count(skipped, "more problem")} not shown')
    return problems, len(names)


def _iter_problems(path: Path, test_dir: str | Path | None, shape: tuple[int, int],
                   classes: tuple[str, ...], progress: bool, names: set[str]
                   ) -> Iterator[str]:
    """Yield every problem, in the order found; the test-dir comparison comes last.

    ``names`` receives the image names the CSV holds.
    """
    test_names = None
    if test_dir is not None:
        test_dir = Path(test_dir)
        if not test_dir.is_dir():
            yield f'{path}: test dir {test_dir} does not exist or is not a directory'
        else:
            test_names = {p.name for p in find_images(test_dir, DATASET_SUFFIXES)}
            if not test_names:
                yield (f'{path}: no image files ({", ".join(DATASET_SUFFIXES)}) under test '
                       f'dir {test_dir}')
    try:
        # Strict UTF-8: a BOM shows up in the header check, other bad bytes stop the check.
        f = open(path, newline='', encoding='utf-8')
    except OSError as e:
        yield f'{path}: cannot open ({e.strerror})'
        return
    with f:
        try:
            csv_names = yield from _iter_row_problems(path, f, shape, classes, progress)
        except UnicodeDecodeError as e:
            yield f'{path}: not UTF-8 text ({e.reason}), check stopped there'
            return
    names.update(csv_names)
    if test_names:
        missing = test_names - csv_names
        if missing:
            yield (f'{path}: {_count(len(missing), "test image")} under {test_dir} missing '
                   f'from the CSV: {_names(missing)}')
        unexpected = csv_names - test_names
        if unexpected:
            yield (f'{path}: {_count(len(unexpected), "image")} in the CSV not under '
                   f'{test_dir}: {_names(unexpected)}')


def _iter_row_problems(path: Path, f: TextIO, shape: tuple[int, int],
                       classes: tuple[str, ...], progress: bool = False
                       ) -> Generator[str, None, set[str]]:
    """Yield the problems of header and rows; return the image names met."""
    lines = _Lines(f, shape[0] * shape[1])
    records = track(_records(lines), description='rows', enabled=None if progress else False)
    first = next(records, None)
    if first is None:
        yield f'{path}: empty file'
        return set()
    _, header = first
    expected_header = ','.join(SUBMISSION_HEADER)
    if isinstance(header, csv.Error) or tuple(header) != SUBMISSION_HEADER:
        got = str(header) if isinstance(header, csv.Error) else ','.join(header)
        yield f'{path}:1: header must be {expected_header!r}, got {got!r}'
    class_index = {name: i for i, name in enumerate(classes)}
    first_blocks: dict[str, int] = {}  # image -> line of its first block
    block = None
    for line_no, row in records:
        if isinstance(row, csv.Error):
            yield f'{path}:{line_no}: unreadable row: {row}'
            continue
        if len(row) != len(SUBMISSION_HEADER):
            yield (f'{path}:{line_no}: expected {len(SUBMISSION_HEADER)} fields '
                   f'({expected_header}), got {len(row)}')
            if len(row) < 2:
                continue
        name, cls = row[0], row[1]
        if block is None or name != block.image:
            if block is not None:
                yield from _missing_classes(path, block, classes)
            block = _Block(name, line_no)
            if name in first_blocks:
                yield (f'{path}:{line_no}: image {name} appears in a second block '
                       f'(first block at line {first_blocks[name]})')
            else:
                first_blocks[name] = line_no
                # Rows name images by base name; a path or nothing cannot match a test image.
                if not name or '/' in name or '\\' in name:
                    yield f'{path}:{line_no}: image name {name!r} is not a file base name'
        index = class_index.get(cls)
        if index is None:
            yield f'{path}:{line_no}: image {name}: unknown class {cls!r}'
        elif cls in block.class_lines:
            yield (f'{path}:{line_no}: image {name}: class {cls} repeated '
                   f'(first at line {block.class_lines[cls]})')
        else:
            block.class_lines[cls] = line_no
            if index < block.previous:
                yield (f'{path}:{line_no}: image {name}: class {cls} out of order '
                       f'(after {classes[block.previous]})')
            block.previous = index
        if len(row) == len(SUBMISSION_HEADER):
            problem = lines.rle_problem(row[2])
            if problem:
                yield f'{path}:{line_no}: image {name}, class {cls}: {problem}'
    if block is None:
        yield f'{path}: no rows after the header'
    else:
        yield from _missing_classes(path, block, classes)
    return set(first_blocks)


class _Lines:
    """The file's lines for the csv module, each over-long RLE field checked while read.

    A line longer than ``_PIECE`` whose first two fields are plain (no quotes) has its
    third field fed to an ``RleParser`` piece by piece and replaced by a key to the
    verdict; a comma in it still counts as a field separator. Other lines go through whole.
    """

    def __init__(self, f: TextIO, num_pixels: int) -> None:
        self.f = f
        self.num_pixels = num_pixels
        self._verdicts: dict[str, str | None] = {}  # key in place of a field -> its problem

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self.f.readline(_PIECE)
            if not line:
                return
            if len(line) < _PIECE or line[-1] in '\r\n':
                yield line
            else:
                yield self._long_line(line)

    def rle_problem(self, rle: str) -> str | None:
        """The first thing wrong with an RLE field (or the key of a streamed one)."""
        if rle in self._verdicts:
            return self._verdicts.pop(rle)
        parser = RleParser(self.num_pixels, keep=False)
        try:
            parser.feed(rle)
            parser.close()
        except ValueError as e:
            return str(e)
        return None

    def _long_line(self, first: str) -> str:
        comma = first.find(',')
        comma = first.find(',', comma + 1) if comma >= 0 else -1
        if comma < 0 or '"' in first[:comma]:  # not the plain layout: read it whole
            parts = [first]
            while len(parts[-1]) == _PIECE and parts[-1][-1] not in '\r\n':
                parts.append(self.f.readline(_PIECE))
            return ''.join(parts)
        parser = RleParser(self.num_pixels, keep=False)
        problem, commas, piece, text = None, 0, first, first[comma + 1:]
        while True:
            body = text.rstrip('\r\n')
            ending = text[len(body):]
            commas += body.count(',')
            if problem is None:
                try:
                    parser.feed(body)
                except ValueError as e:
                    problem = str(e)
            if ending or len(piece) < _PIECE:
                break
            piece = text = self.f.readline(_PIECE)
        if problem is None:
            try:
                parser.close()
            except ValueError as e:
                problem = str(e)
        key = f'\x1f{len(self._verdicts)}'
        self._verdicts[key] = problem
        return first[:comma + 1] + key + ',' * commas + (ending or '\n')


def _records(lines: Iterable[str]) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """CSV rows with the line they start on; a row the csv module rejects comes as its error.

    The reader moves past a rejected row (e.g. a field over ``csv.field_size_limit()``), so
    the rows after it are still checked.
    """
    reader = csv.reader(lines)
    while True:
        line_no = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            row = e
        yield line_no, row


def _missing_classes(path: Path, block: _Block, classes: tuple[str, ...]) -> Iterator[str]:
    missing = [name for name in classes if name not in block.class_lines]
    if missing:
        noun = 'class' if len(missing) == 1 else 'classes'
        yield (f'{path}:{block.line_no}: image {block.image}: '
               f'missing {noun} {", ".join(missing)}')


def _count(n: int, noun: str) -> str:
    return f'{n} {noun}' if n == 1 else f'{n} {noun}s'


def _names(names: set[str]) -> str:
    shown = sorted(names)[:_LISTED_NAMES]
    more = len(names) - len(shown)
    return ', '.join(shown) + (f', ... ({more} more)' if more else '')
