"""The submission checker on hand-made malformed CSVs, and its command line."""
from pathlib import Path

import numpy as np
import pytest

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.evaluation.submission_check import check_submission
from handbone_mmseg.functional.rle import rle_decode, rle_encode
from handbone_mmseg.io.submission import write_submission

from helpers import load_tool

SHAPE = (8, 8)  # 64 pixels
HEADER = 'image_name,class,rle\n'


def rows(name: str, classes: tuple[str, ...] = CLASSES, rle: str = '') -> str:
    return ''.join(f'{name},{cls},{rle}\n' for cls in classes)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / 'sub.csv'
    path.write_text(text)
    return path


def with_line(text: str, line_no: int, line: str) -> str:
    """``text`` with its 1-based line ``line_no`` replaced by ``line``."""
    lines = text.splitlines(keepends=True)
    lines[line_no - 1] = line + '\n'
    return ''.join(lines)


def valid_submission(path: Path, names: list[str], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    masks = {name: rng.random((len(CLASSES), *SHAPE)) > 0.5 for name in names}
    masks[names[0]][0] = True    # one run over the whole image: '1 64'
    masks[names[0]][1] = False   # an empty field
    write_submission(path, ((n, [rle_encode(m) for m in ms]) for n, ms in masks.items()))
    return path


def make_test_dir(root: Path, names: list[str]) -> Path:
    """Empty ``*.png`` files in patient folders: the checker only reads their names."""
    for i, name in enumerate(names):
        png = root / 'DCM' / f'ID{i:03d}' / name
        png.parent.mkdir(parents=True)
        png.touch()
    (root / 'notes.txt').touch()
    return root


A = HEADER + rows('a.png')  # a.png on lines 2..30, finger-k on line k + 1, Ulna on 30


@pytest.mark.parametrize('text, expected', [
    ('name,class,rle\n' + rows('a.png'),
     ":1: header must be 'image_name,class,rle', got 'name,class,rle'"),
    ('\ufeff' + A,  # a BOM is shown, escaped
     ":1: header must be 'image_name,class,rle', got '\\ufeffimage_name,class,rle'"),
    (with_line(A, 4, 'a.png,finger-3'), ':4: expected 3 fields (image_name,class,rle), got 2'),
    (with_line(A, 4, 'a.png,finger-3,1 2,3'),
     ':4: expected 3 fields (image_name,class,rle), got 4'),
    (with_line(A, 4, 'a.png,finger-3,\n'),  # a blank line
     ':5: expected 3 fields (image_name,class,rle), got 0'),
    (HEADER + rows('a.png', CLASSES[:22] + CLASSES[23:]),
     ':2: image a.png: missing class Hamate'),
    (HEADER + rows('a.png', CLASSES[:1] + CLASSES[2:3] + CLASSES[1:2] + CLASSES[3:]),
     ':4: image a.png: class finger-2 out of order (after finger-3)'),
    (HEADER + rows('a.png', CLASSES[:1] + CLASSES[3:4] + CLASSES[1:3] + CLASSES[4:]),
     ':4: image a.png: class finger-2 out of order (after finger-4)'),  # one line per move
    (A + 'a.png,Ulna,\n', ':31: image a.png: class Ulna repeated (first at line 30)'),
    (with_line(A, 21, 'a.png,finger-20,\na.png,Trapezium,'),
     ":21: image a.png: unknown class 'finger-20'"),
    (A + rows('b.png') + rows('a.png'),
     ':60: image a.png appears in a second block (first block at line 2)'),
    (HEADER + rows('ID001/a.png'), ":2: image name 'ID001/a.png' is not a file base name"),
    (HEADER, ': no rows after the header'),
    ('', ': empty file'),
])
def test_one_problem(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert check_submission(path, shape=SHAPE) == [f'{path}{expected}']


@pytest.mark.parametrize('rle, expected', [
    ('1 2 3', 'RLE has an odd count of 3 numbers, expected start/length pairs'),
    ('1 x', "RLE token 'x' is not an integer"),
    ('1.5 2', "RLE token '1.5' is not an integer"),
    ('0 2', 'RLE run 1 starts at 0, starts are 1-based'),
    ('5 1 -3 1', 'RLE run 2 starts at -3, starts are 1-based'),
    ('3 0', 'RLE run 1 has length 0, lengths must be >= 1'),
    ('10 2 5 1', 'RLE run 2 starts at 5, not after run 1 ends at 11: '
                 'runs must increase and not overlap'),
    ('1 3 3 1', 'RLE run 2 starts at 3, not after run 1 ends at 3: '
                'runs must increase and not overlap'),
    ('1 1 60 6', 'RLE run 2 ends at pixel 65, past the image (64 pixels)'),
    ('5000000000000000000 5000000000000000000',  # start + length overflows int64
     'RLE run 1 ends at pixel 9999999999999999999, past the image (64 pixels)'),
    ('1 99999999999999999999', 'RLE number out of the 64-bit range'),
])
def test_bad_rle(tmp_path, rle, expected):
    path = write(tmp_path, with_line(A, 8, f'a.png,finger-7,{rle}'))
    assert check_submission(path, shape=SHAPE) == [
        f'{path}:8: image a.png, class finger-7: {expected}']


@pytest.mark.parametrize('rle', ['1 2 3 1', '60 5', ''])
def test_edge_rle_accepted(tmp_path, rle):
    """Touching runs, a run to the last pixel and no runs are all valid."""
    path = write(tmp_path, with_line(A, 8, f'a.png,finger-7,{rle}'))
    assert check_submission(path, shape=SHAPE) == []


def test_rle_verdict_agrees_with_decoder(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / 'one.csv'
    verdicts = []
    for _ in range(300):
        rle = ' '.join(map(str, rng.integers(-1, 40, rng.integers(0, 7))))
        path.write_text(f'{HEADER}a.png,bone,{rle}\n')
        problems = check_submission(path, shape=(6, 6), classes=('bone',))
        try:
            rle_decode(rle, (6, 6))
            decodes = True
        except ValueError:
            decodes = False
        assert len(problems) == (0 if decodes else 1), rle
        verdicts.append(decodes)
    assert 0 < sum(verdicts) < len(verdicts)  # both verdicts were exercised


def test_valid_submission_passes(tmp_path):
    path = valid_submission(tmp_path / 'sub.csv', ['image1_R.png', 'image2.png', 'image3.png'])
    assert path.read_text().splitlines()[1] == 'image1_R.png,finger-1,1 64'
    test_dir = make_test_dir(tmp_path / 'test', ['image1_R.png', 'image2.png', 'image3.png'])
    assert check_submission(path, shape=SHAPE) == []
    assert check_submission(path, test_dir, shape=SHAPE) == []


def test_image_not_in_test_dir(tmp_path):
    path = valid_submission(tmp_path / 'sub.csv', ['a.png', 'b.png'])
    test_dir = make_test_dir(tmp_path / 'test', ['a.png'])
    assert check_submission(path, test_dir, shape=SHAPE) == [
        f'{path}: 1 image in the CSV not under {test_dir}: b.png']


def test_test_images_missing_from_csv(tmp_path):
    path = valid_submission(tmp_path / 'sub.csv', ['a.png'])
    extra = [f'c{i}.png' for i in range(7)]
    test_dir = make_test_dir(tmp_path / 'test', ['a.png', *extra])
    assert check_submission(path, test_dir, shape=SHAPE) == [
        f'{path}: 7 test images under {test_dir} missing from the CSV: '
        'c0.png, c1.png, c2.png, c3.png, c4.png, ... (2 more)']


def test_test_dir_problems(tmp_path):
    path = valid_submission(tmp_path / 'sub.csv', ['a.png'])
    absent = tmp_path / 'nowhere'
    assert check_submission(path, absent, shape=SHAPE) == [
        f'{path}: test dir {absent} does not exist or is not a directory']
    (tmp_path / 'empty').mkdir()
    assert check_submission(path, tmp_path / 'empty', shape=SHAPE) == [
        f'{path}: no image files (.png, .dcm, .dicom) under test dir {tmp_path / "empty"}']


def test_missing_file(tmp_path):
    path = tmp_path / 'nothing.csv'
    assert check_submission(path) == [f'{path}: cannot open (No such file or directory)']


def test_not_utf8_stops_with_one_line(tmp_path):
    path = tmp_path / 'sub.csv'
    path.write_bytes(A.replace('a.png', 'a\xff.png').encode('latin-1'))
    assert check_submission(path, shape=SHAPE) == [
        f'{path}: not UTF-8 text (invalid start byte), check stopped there']


def test_rows_over_csv_default_field_limit_are_checked(tmp_path):
    # 40,000 runs make a field over the csv module's default 128 KiB limit
    text = with_line(A, 6, 'a.png,finger-5,' + '1 1 ' * 40000)
    path = write(tmp_path, with_line(text, 9, 'a.png,finger-8,0 1'))
    assert check_submission(path, shape=SHAPE) == [
        f'{path}:6: image a.png, class finger-5: RLE run 2 starts at 1, not after run 1 '
        'ends at 1: runs must increase and not overlap',
        f'{path}:9: image a.png, class finger-8: RLE run 1 starts at 0, starts are 1-based',
    ]


def test_all_problems_of_a_file_are_reported(tmp_path):
    a = with_line(with_line(rows('a.png'), 2, 'a.png,finger-2'), 4, 'a.png,finger-4,1 2 3')
    text = 'image_name,rle\n' + a + rows('b.png', CLASSES[:-1]) + rows('a.png')
    path = write(tmp_path, text)
    assert check_submission(path, shape=SHAPE) == [
        f"{path}:1: header must be 'image_name,class,rle', got 'image_name,rle'",
        f'{path}:3: expected 3 fields (image_name,class,rle), got 2',
        f'{path}:5: image a.png, class finger-4: RLE has an odd count of 3 numbers, '
        'expected start/length pairs',
        f'{path}:31: image b.png: missing class Ulna',
        f'{path}:59: image a.png appears in a second block (first block at line 2)',
    ]


def test_missing_classes_listed_by_name(tmp_path):
    path = write(tmp_path, HEADER + rows('a.png', CLASSES[:26]) + rows('b.png'))
    assert check_submission(path, shape=SHAPE) == [
        f'{path}:2: image a.png: missing classes Pisiform, Radius, Ulna']


def test_max_problems_truncates_and_counts_the_rest(tmp_path):
    path = write(tmp_path, HEADER + rows('a.png', rle='0 1'))
    problems = check_submission(path, shape=SHAPE, max_problems=3)
    assert problems == [
        *(f'{path}:{k + 1}: image a.png, class finger-{k}: RLE run 1 starts at 0, '
          'starts are 1-based' for k in (1, 2, 3)),
        f'{path}: 26 more problems not shown',
    ]
    assert len(check_submission(path, shape=SHAPE)) == 29  # 29 < the default of 50


@pytest.mark.parametrize('kwargs, message', [
    (dict(shape=(0, 8)), 'shape'),
    (dict(classes=()), 'classes'),
    (dict(max_problems=0), 'max_problems must be at least 1, got 0'),
])
def test_bad_arguments_raise(tmp_path, kwargs, message):
    path = write(tmp_path, A)
    with pytest.raises(ValueError, match=message):
        check_submission(path, **kwargs)


@pytest.fixture(scope='module')
def cli():
    """``tools/check_submission.py`` imported as a module, to call ``main(argv)``."""
    return load_tool('check_submission')


def test_cli_ok(tmp_path, cli, capsys):
    path = valid_submission(tmp_path / 'sub.csv', ['a.png', 'b.png', 'c.png'])
    test_dir = make_test_dir(tmp_path / 'test', ['a.png', 'b.png', 'c.png'])
    assert cli.main([str(path), '--test-dir', str(test_dir), '--size', '8', '8']) == 0
    assert capsys.readouterr().out == 'OK: 3 images x 29 classes\n'


def test_cli_reports_problems(tmp_path, cli, capsys):
    path = valid_submission(tmp_path / 'sub.csv', ['a.png', 'b.png'])
    test_dir = make_test_dir(tmp_path / 'test', ['a.png', 'c.png'])
    assert cli.main([str(path), '--test-dir', str(test_dir), '--size', '8', '8']) == 1
    assert capsys.readouterr().out == (
        f'{path}: 1 test image under {test_dir} missing from the CSV: c.png\n'
        f'{path}: 1 image in the CSV not under {test_dir}: b.png\n')


def test_cli_size_sets_the_image_bounds(tmp_path, cli, capsys):
    path = write(tmp_path, with_line(A, 8, 'a.png,finger-7,60 6'))
    assert cli.main([str(path)]) == 0  # fits the default 2048x2048
    assert capsys.readouterr().out == 'OK: 1 images x 29 classes\n'
    assert cli.main([str(path), '--size', '8', '8']) == 1
    assert capsys.readouterr().out == (
        f'{path}:8: image a.png, class finger-7: RLE run 1 ends at pixel 65, '
        'past the image (64 pixels)\n')


def test_cli_missing_file_is_one_line(tmp_path, cli, capsys):
    path = tmp_path / 'nothing.csv'
    assert cli.main([str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == f'{path}: cannot open (No such file or directory)\n'
    assert captured.err == ''


def test_cli_rejects_non_positive_size(tmp_path, cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(write(tmp_path, A)), '--size', '0', '8'])
    assert exit_info.value.code == 2
    assert 'must be a positive size, got 0' in capsys.readouterr().err
