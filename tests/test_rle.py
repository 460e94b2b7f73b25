"""RLE strings on hand-made masks, round trips, and the submission CSV."""
import numpy as np
import pytest

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.functional.rle import rle_decode, rle_encode
from handbone_mmseg.io.submission import (
    SubmissionError,
    iter_submission,
    read_submission,
    write_submission,
)


def obvious_rle(mask: np.ndarray) -> str:
    """The usual full-frame encoder, the reference for byte-identical output."""
    pixels = np.concatenate([[0], mask.flatten().astype(np.int64), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return ' '.join(str(x) for x in runs)


@pytest.mark.parametrize('rows, expected', [
    ([[0, 0, 0], [0, 0, 0]], ''),
    ([[1, 1, 1], [1, 1, 1]], '1 6'),
    ([[0, 1, 1], [0, 0, 0]], '2 2'),
    ([[0, 0, 1], [1, 0, 0]], '3 2'),          # a run wraps from row 0 into row 1
    ([[1, 0, 1], [0, 1, 0]], '1 1 3 1 5 1'),
    ([[0, 0, 0], [0, 0, 1]], '6 1'),          # last pixel
])
def test_hand_made_masks(rows, expected):
    mask = np.array(rows, dtype=bool)
    assert rle_encode(mask) == expected
    assert np.array_equal(rle_decode(expected, mask.shape), mask)


def test_bounding_box_runs_match_full_frame_encoder():
    rng = np.random.default_rng(3)
    for _ in range(50):
        mask = np.zeros((37, 53), bool)
        y0, x0 = rng.integers(0, 30, 2)
        mask[y0:y0 + rng.integers(1, 8), x0:x0 + rng.integers(1, 20)] = True
        mask |= rng.random(mask.shape) > 0.97
        assert rle_encode(mask) == obvious_rle(mask)
        assert np.array_equal(rle_decode(rle_encode(mask), mask.shape), mask)


def test_full_width_rows_and_edges():
    mask = np.zeros((6, 5), bool)
    mask[1, 3:] = True   # touches the right edge ...
    mask[2, :2] = True   # ... and continues on the left edge of the next row
    mask[4, :] = True
    assert rle_encode(mask) == obvious_rle(mask) == '9 4 21 5'


def test_uint8_masks_encode_like_bool():
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 255
    assert rle_encode(mask) == rle_encode(mask > 0) == '6 2 10 2'


@pytest.mark.parametrize('rle, message', [
    ('1 2 3', 'odd count of 3 numbers'),
    ('1 b', "token 'b' is not an integer"),
    ('0 2', 'run 1 starts at 0, starts are 1-based'),
    ('3 0', 'run 1 has length 0'),
    ('5 2 3 1', 'run 2 starts at 3, not after run 1 ends at 6'),
    ('1 3 3 1', 'must increase and not overlap'),
    ('5 3', 'run 1 ends at pixel 7, past the image \\(6 pixels\\)'),
])
def test_decode_rejects_malformed(rle, message):
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, (2, 3))


def test_submission_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    masks = {f'image{i}_R.png': rng.random((len(CLASSES), 8, 8)) > 0.7 for i in range(3)}
    masks['image9.png'] = np.zeros((len(CLASSES), 8, 8), bool)  # empty rle fields
    path = tmp_path / 'sub.csv'
    count = write_submission(
        path, ((name, [rle_encode(m) for m in ms]) for name, ms in masks.items()))
    assert count == 4
    lines = path.read_text().splitlines()
    assert lines[0] == 'image_name,class,rle'
    assert len(lines) == 1 + 4 * 29
    assert lines[1].startswith('image0_R.png,finger-1,')
    assert lines[-1] == 'image9.png,Ulna,'
    decoded = dict(read_submission(path, shape=(8, 8)))
    assert decoded.keys() == masks.keys()
    for name in masks:
        assert np.array_equal(decoded[name], masks[name])


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / 'sub.csv'
    write_submission(path, [('a.png', [''] * 29)])
    before = path.read_bytes()

    def rows():
        yield 'b.png', [''] * 29
        raise RuntimeError('model crashed mid-way')

    with pytest.raises(RuntimeError):
        write_submission(path, rows())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['sub.csv']


def _csv(tmp_path, text):
    path = tmp_path / 'bad.csv'
    path.write_text(text)
    return path


def _rows(name, classes=CLASSES):
    return ''.join(f'{name},{c},\n' for c in classes)


@pytest.mark.parametrize('text, message', [
    ('name,class,rle\n', 'bad.csv:1: header'),
    ('image_name,class,rle\n' + _rows('a.png', CLASSES[:5]), 'ends after 5 of 29'),
    ('image_name,class,rle\n' + _rows('a.png', CLASSES[1:] + CLASSES[:1]),
     "bad.csv:2: class 'finger-2' where 'finger-1' belongs"),
    ('image_name,class,rle\n' + _rows('a.png') + _rows('a.png'), 'appears twice'),
    ('image_name,class,rle\na.png,finger-1\n', 'expected 3 fields'),
])
def test_reader_names_the_problem(tmp_path, text, message):
    with pytest.raises(SubmissionError, match=message):
        list(iter_submission(_csv(tmp_path, text)))


def test_reader_names_image_and_class_of_bad_rle(tmp_path):
    text = 'image_name,class,rle\n' + _rows('a.png').replace('a.png,Ulna,', 'a.png,Ulna,1 2 3')
    with pytest.raises(SubmissionError, match='a.png, Ulna: RLE has an odd count'):
        list(read_submission(_csv(tmp_path, text), shape=(4, 4)))


def test_long_rle_fields_read_back(tmp_path):
    """A noisy mask's RLE is far over the csv module's default 128 KiB field limit."""
    mask = np.zeros((400, 400), bool)
    mask.reshape(-1)[::2] = True  # 80,000 runs, about 1 MB of text
    path = tmp_path / 'sub.csv'
    write_submission(path, [('a.png', [rle_encode(mask)] + [''] * 28)])
    (name, masks), = read_submission(path, shape=(400, 400))
    assert np.array_equal(masks[0], mask)
