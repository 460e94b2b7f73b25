"""Run-length encoding of masks: encode, check and decode ``start length`` runs.

The submission CSV that carries the runs is read and written by
``handbone_mmseg.io.submission`` (format in docs/format.md).
"""
import re

import cv2
import numpy as np


def rle_encode(mask: np.ndarray, offset: tuple[int, int] = (0, 0),
               width: int | None = None) -> str:
    """Encode a 2-D mask as row-major ``start length`` pairs, starts 1-based.

    Byte-identical to the usual ``np.diff`` encoder but scans only the mask's bounding box,
    so a bone that covers 1% of a 2048x2048 frame costs a fraction of a full-frame diff.

    Args:
        mask: (H, W) array; non-zero pixels are foreground.
        offset: ``(y, x)`` of the mask's first pixel in its frame, for a mask that is a
            window of a larger frame (zero outside it).
        width: the frame's width (default the mask's own).

    Returns:
        The space-separated runs, or ``''`` for an empty mask.
    """
    if mask.ndim != 2:
        raise ValueError(f'rle_encode expects a 2-D mask, got shape {mask.shape}')
    m = mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8)
    m = np.ascontiguousarray(m)
    oy, ox = offset
    width = m.shape[1] if width is None else width
    if ox < 0 or oy < 0 or ox + m.shape[1] > width:
        raise ValueError(f'a {m.shape} mask at {offset} does not fit a frame {width} wide')
    x, y, w, h = cv2.boundingRect(m)
    if w == 0:
        return ''
    # A full-width block is contiguous in row-major order and a run may wrap from the end of
    # one row into the next, so it is scanned as one long row; otherwise each row of the box
    # gets a zero on both sides and runs cannot cross rows.
    block = m[y:y + h].reshape(1, -1) if w == width else m[y:y + h, x:x + w]
    bh, bw = block.shape
    padded = np.zeros((bh, bw + 2), np.int8)
    padded[:, 1:-1] = block
    steps = np.diff(padded.reshape(-1))
    before_start = np.flatnonzero(steps > 0)  # padded index just before each run
    run_end = np.flatnonzero(steps < 0)
    row, col = np.divmod(before_start, bw + 2)
    runs = np.empty(2 * before_start.size, np.int64)
    # col is the block column of the start; a full-width block has x == ox == 0
    runs[0::2] = (oy + y + row) * width + ox + x + col + 1
    runs[1::2] = run_end - before_start
    return ' '.join(map(str, runs.tolist()))


# one field as the encoder writes it: integers, each space between two of them single
# (possessive: the engine keeps no backtracking state per number, ~100 bytes each)
_RUNS = re.compile(r'(?:-?[0-9]+ )*+-?[0-9]+')
_LONG_NUMBER = re.compile(r'[0-9]{19,}')  # may not fit in int64: checked one by one
_INT64_MAX = 2**63 - 1
_WHITESPACE = {'\t': 'a tab', '\n': 'a line break', '\r': 'a line break'}


class RleParser:
    """Checks ``start length`` pairs fed in pieces, so memory holds a piece, not the field.

    ``feed(text)`` any number of times, then ``close()``. The field must be as the encoder
    writes it: integers separated by single spaces, no space before the first or after the
    last (the format's whitespace rule; a tab or a doubled space is refused). The first
    problem raises ``ValueError``: a token that is not an integer, a misplaced space, a
    number outside int64, a start below 1, a length below 1, a run past ``num_pixels``,
    runs that do not increase or overlap, or (at ``close``) an odd count of numbers.

    Args:
        num_pixels: pixels of the image (``H * W``).
        keep: keep the runs for ``close()`` to return (``False`` for checking only).
    """

    def __init__(self, num_pixels: int, keep: bool = True) -> None:
        self.num_pixels = num_pixels
        self.keep = keep
        self._carry = ''  # text after the last space seen: a number that may go on
        self._offset = 0  # characters before the carry
        self._pending: np.ndarray = np.empty(0, np.int64)  # a start awaiting its length
        self._count = 0  # numbers seen
        self._runs = 0  # runs checked
        self._last_end = 0  # last pixel (1-based) of the previous run, 0 before the first
        self._starts: list[np.ndarray] = []
        self._ends: list[np.ndarray] = []

    def feed(self, text: str) -> None:
        """Check the next piece of the field (pieces may split a number anywhere)."""
        text = self._carry + text
        cut = text.rfind(' ')
        if cut < 0:
            self._carry = text
            if len(text) > 40:  # no number is this long: fail now, not after 200 MB
                self._check_tokens(text, self._offset)
            return
        self._check_tokens(text[:cut], self._offset)
        self._offset += cut + 1
        self._carry = text[cut + 1:]

    def close(self) -> tuple[np.ndarray, np.ndarray]:
        """Check the end of the field; return 0-based run starts and (exclusive) ends."""
        if self._carry or self._offset:
            if not self._carry:
                raise ValueError(f'RLE ends with a trailing space (character {self._offset})')
            self._check_tokens(self._carry, self._offset)
        if self._pending.size:
            raise ValueError(f'RLE has an odd count of {self._count} numbers, expected '
                             'start/length pairs')
        if not self._starts:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(self._starts) - 1, np.concatenate(self._ends)

    def _check_tokens(self, part: str, offset: int) -> None:
        """Check ``part``, whole numbers separated by spaces, which starts at ``offset``."""
        if not _RUNS.fullmatch(part):
            raise ValueError(self._token_problem(part, offset))
        for match in _LONG_NUMBER.finditer(part):
            if int(match[0]) > _INT64_MAX:
                raise ValueError('RLE number out of the 64-bit range')
        values = np.fromstring(part, dtype=np.int64, sep=' ')  # checked: plain integers
        self._count += values.size
        values = np.concatenate([self._pending, values])
        even = values.size - values.size % 2
        self._pending = values[even:]
        self._check_runs(values[0:even:2], values[1:even:2])

    @staticmethod
    def _token_problem(part: str, offset: int) -> str:
        position = offset
        for token in part.split(' '):
            if not token:
                if position == 0:
                    return 'RLE starts with a space'
                return f'RLE has two spaces in a row (character {position + 1})'
            blank = next((c for c in token if c.isspace()), None)
            if blank is not None:
                name = _WHITESPACE.get(blank, repr(blank))
                return (f'RLE has {name} (character {position + token.index(blank) + 1}); '
                        'numbers are separated by single spaces')
            if not _RUNS.fullmatch(token):
                shown = token if len(token) <= 40 else token[:40] + '...'
                return f'RLE token {shown!r} is not an integer'
            position += len(token) + 1
        return 'RLE is malformed'  # not reached: some token failed the match

    def _check_runs(self, starts: np.ndarray, lengths: np.ndarray) -> None:
        first = self._runs + 1  # number of the first run here, 1-based
        self._runs += starts.size
        bad = np.flatnonzero(starts < 1)
        if bad.size:
            raise ValueError(f'RLE run {first + bad[0]} starts at {starts[bad[0]]}, starts are '
                             '1-based')
        bad = np.flatnonzero(lengths < 1)
        if bad.size:
            raise ValueError(f'RLE run {first + bad[0]} has length {lengths[bad[0]]}, lengths '
                             'must be >= 1')
        # Compared as length > room left, since start + length may overflow int64.
        bad = np.flatnonzero(lengths > self.num_pixels + 1 - starts)
        if bad.size:
            i = bad[0]
            raise ValueError(f'RLE run {first + i} ends at pixel '
                             f'{int(starts[i]) + int(lengths[i]) - 1}, past the image '
                             f'({self.num_pixels} pixels)')
        ends = starts + lengths - 1  # last pixel of each run, 1-based
        previous = np.concatenate([[self._last_end], ends[:-1]])
        bad = np.flatnonzero(starts <= previous)
        if bad.size:
            i = bad[0]
            raise ValueError(f'RLE run {first + i} starts at {starts[i]}, not after run '
                             f'{first + i - 1} ends at {previous[i]}: runs must increase '
                             'and not overlap')
        if ends.size:
            self._last_end = int(ends[-1])
            if self.keep:
                self._starts.append(starts)
                self._ends.append(ends)


def parse_rle(rle: str, num_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Check ``start length`` pairs and return 0-based run starts and (exclusive) ends.

    Raises:
        ValueError: the first problem found (see ``RleParser``).
    """
    parser = RleParser(num_pixels)
    parser.feed(rle)
    return parser.close()


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode ``start length`` pairs into a bool mask of ``shape``.

    Raises:
        ValueError: malformed runs, as ``parse_rle`` says.
    """
    mask = np.zeros(shape[0] * shape[1], np.bool_)
    # A bone has a few hundred runs: slicing per run beats any full-frame vector trick.
    for start, end in zip(*(a.tolist() for a in parse_rle(rle, mask.size))):
        mask[start:end] = True
    return mask.reshape(shape)
