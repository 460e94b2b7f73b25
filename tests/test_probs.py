"""Probability dumps: quantising, per-class box crops, the index, and their error messages."""
import json
import os
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from handbone_mmseg.functional import dequantize, quantize
from handbone_mmseg.io import ProbDump, ProbDumpError, check_compatible, save_probs, write_index
from handbone_mmseg.io.prob_dump import DUMP_FORMAT, load_levels, lock_dump

from helpers import ROOT

# float32 holds k / 255 and k / 65535 only to about 3e-8: the slack above half a level
FLOAT32_SLACK = 1e-7


@pytest.mark.parametrize('dtype, levels', [('uint8', 255), ('uint16', 65535)])
def test_round_trip_error_is_at_most_half_a_level(dtype, levels):
    rng = np.random.default_rng(0)
    probs = np.concatenate([[0.0, 1.0, 0.5 / levels, 1 - 0.5 / levels], rng.random(20000)])
    q = quantize(probs, dtype)
    assert q.dtype == np.dtype(dtype)
    back = dequantize(q)
    assert back.dtype == np.float32
    assert np.abs(back.astype(np.float64) - probs).max() <= 0.5 / levels + FLOAT32_SLACK
    assert back[0] == 0.0 and back[1] == 1.0            # the ends are exact
    assert q[0] == 0 and q[1] == levels


def test_levels_by_hand():
    q = quantize(torch.tensor([0.0, 0.2, 0.5, 1.0, -0.25, 1.5]))
    assert q.tolist() == [0, 51, 128, 255, 0, 255]     # out-of-range values are clamped
    assert quantize(np.array([0.2]), 'uint16').tolist() == [13107]


def test_bad_dtypes_are_errors():
    with pytest.raises(ValueError, match="got 'float16'"):
        quantize(np.zeros(3), 'float16')
    with pytest.raises(ValueError, match='got float32'):
        dequantize(np.zeros(3, np.float32))


def _planted():
    """3 classes of 5x7: class 0 non-zero only in rows 1-3, cols 2-5; class 1 all zero."""
    rng = np.random.default_rng(1)
    probs = np.zeros((3, 5, 7), np.float32)
    probs[0, 1:4, 2:6] = rng.uniform(0.1, 1, (3, 4))
    probs[2] = rng.random((5, 7))
    return torch.from_numpy(probs)


@pytest.mark.parametrize('dtype', ['uint8', 'uint16'])
def test_save_and_load_at_full_size(tmp_path, dtype):
    probs = _planted()
    entry = save_probs(tmp_path, 'image1661130828152_R.png', probs, dtype)
    assert entry == dict(file='image1661130828152_R.npz', ori_shape=[5, 7], shape=[5, 7])
    other = save_probs(tmp_path, 'image7.png', torch.zeros(3, 2, 4), dtype)
    write_index(tmp_path, ('a', 'b', 'c'), dtype, 1.0,
                [('image7.png', other), ('image1661130828152_R.png', entry)])

    with np.load(tmp_path / entry['file']) as data:       # each class keeps its box only
        assert data['boxes'].tolist()[:2] == [[1, 4, 2, 6], [0, 0, 0, 0]]
        assert data['c0'].shape == (3, 4) and data['c1'].size == 0

    index = json.loads((tmp_path / 'index.json').read_text())
    assert index['format'] == DUMP_FORMAT and index['classes'] == ['a', 'b', 'c']
    assert index['dtype'] == dtype and index['scale'] == 1.0
    assert list(index['images']) == ['image1661130828152_R.png', 'image7.png']
    assert index['images']['image7.png']['ori_shape'] == [2, 4]

    dump = ProbDump(tmp_path)
    assert dump.names == ['image1661130828152_R.png', 'image7.png']
    assert dump.classes == ('a', 'b', 'c') and dump.dtype == dtype
    assert dump.ori_shapes == {'image1661130828152_R.png': (5, 7), 'image7.png': (2, 4)}
    loaded = dump.load('image1661130828152_R.png')
    assert loaded.dtype == torch.float32 and loaded.shape == (3, 5, 7)
    assert torch.equal(loaded, torch.from_numpy(dequantize(quantize(probs, dtype))))
    outside = torch.ones(5, 7, dtype=bool)
    outside[1:4, 2:6] = False
    assert (loaded[0][outside] == 0).all() and (loaded[0][~outside] > 0).all()
    assert (loaded[1] == 0).all()                          # an all-zero class survives
    assert torch.equal(dump.load('image7.png'), torch.zeros(3, 2, 4))
    assert load_levels(tmp_path / 'image7.npz').dtype == np.dtype(dtype)


def test_half_scale_stores_half_and_loads_full_size(tmp_path):
    y, x = torch.meshgrid(torch.arange(40), torch.arange(60), indexing='ij')
    ramp = ((x + y) / 98).float()[None]                    # slope 1/98 per pixel
    entry = save_probs(tmp_path, 'a.png', ramp, scale=0.5)
    assert entry['shape'] == [20, 30] and entry['ori_shape'] == [40, 60]
    assert load_levels(tmp_path / 'a.npz').shape == (1, 20, 30)
    write_index(tmp_path, ('a', ), 'uint8', 0.5, [('a.png', entry)])
    loaded = ProbDump(tmp_path).load('a.png')
    assert loaded.shape == (1, 40, 60)
    err = (loaded - ramp).abs()[0]
    # area down + bilinear up is exact on a ramp away from the border: quantisation only
    assert err[1:-1, 1:-1].max() <= 0.5 / 255 + FLOAT32_SLACK
    assert err.max() <= 1 / 98 + 0.5 / 255 + FLOAT32_SLACK  # the border is off by <= 1 pixel


@pytest.mark.parametrize('scale', [0, -0.5, 1.5])
def test_scale_outside_zero_one_is_an_error(tmp_path, scale):
    with pytest.raises(ValueError, match=f'got {scale}'):
        save_probs(tmp_path, 'a.png', torch.zeros(1, 4, 4), scale=scale)


def _dump(folder: Path, shapes: dict[str, tuple[int, int]], classes=('a', 'b'),
          dtype='uint8') -> ProbDump:
    folder.mkdir(parents=True, exist_ok=True)
    entries = [(name, save_probs(folder, name, torch.full((len(classes), *shape), 0.3), dtype))
               for name, shape in shapes.items()]
    write_index(folder, classes, dtype, 1.0, entries)
    return ProbDump(folder)


def _edit_index(folder: Path, **changes) -> None:
    path = folder / 'index.json'
    index = json.loads(path.read_text())
    index.update(changes)
    path.write_text(json.dumps(index))


def test_missing_index_says_how_to_make_one(tmp_path):
    with pytest.raises(ProbDumpError) as info:
        ProbDump(tmp_path / 'probs')
    message = str(info.value)
    assert str(tmp_path / 'probs' / 'index.json') in message
    assert 'tools/test.py' in message and '--save-probs' in message


@pytest.mark.parametrize('text, message', [
    (json.dumps(dict(format='handbone-probs/0')),
     "format 'handbone-probs/0', expected 'handbone-probs/1'"),
    ('{"format": "handbone-probs/1", "classes"', 'malformed probability index'),
    (json.dumps(dict(format=DUMP_FORMAT, classes=['a'], dtype='uint8')),
     'malformed probability index'),
    (json.dumps(dict(format=DUMP_FORMAT, classes=['a'], dtype='float16', images={})),
     "dtype 'float16' is not one of"),
])
def test_bad_index_names_the_problem(tmp_path, text, message):
    (tmp_path / 'index.json').write_text(text)
    with pytest.raises(ProbDumpError, match=message) as info:
        ProbDump(tmp_path)
    assert str(tmp_path / 'index.json') in str(info.value)


@pytest.mark.parametrize('damage', ['truncate', 'flip', 'inflate', 'garbage'])
def test_corrupt_npz_names_the_file(tmp_path, damage):
    folder = tmp_path / 'probs'
    folder.mkdir()
    path = folder / 'a.npz'
    save_probs(folder, 'a.png', torch.rand(2, 30, 30, generator=torch.Generator().manual_seed(0)))
    write_index(folder, ('a', 'b'), 'uint8', 1.0, [('a.png', dict(
        file='a.npz', ori_shape=[30, 30], shape=[30, 30]))])
    raw = bytearray(path.read_bytes())
    if damage == 'truncate':                    # an interrupted copy
        raw = raw[:len(raw) // 2]
    elif damage == 'flip':                      # damage across the zip structure
        raw[40:-40] = bytes(b ^ 0x55 for b in raw[40:-40])
    elif damage == 'inflate':                   # an intact zip whose deflate stream is bad
        with zipfile.ZipFile(path) as z:
            info = z.getinfo('c1.npy')
        start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
        raw[start:start + 50] = bytes(b ^ 0xFF for b in raw[start:start + 50])
    else:
        raw = b'not a zip file at all'
    path.write_bytes(bytes(raw))
    dump = ProbDump(folder)
    with pytest.raises(ProbDumpError, match=re.escape(f'{path}: not a readable probability')):
        dump.load('a.png')


def test_file_that_contradicts_the_index(tmp_path):
    _dump(tmp_path, {'a.png': (6, 5)})
    index = json.loads((tmp_path / 'index.json').read_text())
    index['images']['a.png']['shape'] = [4, 5]
    (tmp_path / 'index.json').write_text(json.dumps(index))
    with pytest.raises(ProbDumpError, match=re.escape(
            f'{tmp_path / "a.npz"}: holds (2, 6, 5), the index says (2, 4, 5)')):
        ProbDump(tmp_path).load('a.png')

    _dump(tmp_path, {'a.png': (6, 5)})
    _edit_index(tmp_path, dtype='uint16')
    with pytest.raises(ProbDumpError, match='holds uint8, the index says uint16'):
        ProbDump(tmp_path).load('a.png')
    with pytest.raises(ProbDumpError, match='no probabilities for image b.png'):
        ProbDump(tmp_path).load('b.png')


def test_check_compatible(tmp_path):
    first = _dump(tmp_path / 'm1', {'a.png': (6, 5), 'b.png': (4, 4)})
    same = _dump(tmp_path / 'm2', {'a.png': (6, 5), 'b.png': (4, 4)})
    check_compatible([first, same], ('a', 'b'))

    other_classes = _dump(tmp_path / 'm3', {'a.png': (6, 5), 'b.png': (4, 4)}, ('a', 'x'))
    with pytest.raises(ProbDumpError, match=re.escape(str(tmp_path / 'm3'))):
        check_compatible([first, other_classes], ('a', 'b'))
    with pytest.raises(ProbDumpError, match=re.escape(str(tmp_path / 'm1'))):
        check_compatible([first], ('a', 'x'))

    fewer = _dump(tmp_path / 'm4', {'a.png': (6, 5), 'c.png': (4, 4)})
    with pytest.raises(ProbDumpError, match='hold different images') as info:
        check_compatible([first, fewer], ('a', 'b'))
    message = str(info.value)
    assert str(tmp_path / 'm1') in message and str(tmp_path / 'm4') in message
    assert "'b.png'" in message and "'c.png'" in message

    resized = _dump(tmp_path / 'm5', {'a.png': (6, 6), 'b.png': (4, 4)})
    with pytest.raises(ProbDumpError, match=re.escape(
            f'{tmp_path / "m5"}: image a.png is (6, 6), in {tmp_path / "m1"} (6, 5)')):
        check_compatible([first, resized], ('a', 'b'))

    with pytest.raises(ProbDumpError, match='no probability dumps'):
        check_compatible([], ('a', 'b'))


# --- one writer per dump -------------------------------------------------------------------

WRITER = '''
import sys, torch
from handbone_mmseg.classes import CLASSES
from handbone_mmseg.evaluation.dice_metric import MultiLabelDiceMetric

def sample(name):
    probs = torch.full((len(CLASSES), 8, 8), 0.9)
    return dict(img_path=f'/data/{name}', seg_logits=dict(data=probs),
                pred_sem_seg=dict(data=probs > 0.5))

metric = MultiLabelDiceMetric(prob_dir=sys.argv[1])
metric.dataset_meta = dict(classes=CLASSES)
metric.process({}, [sample('a.png')])
print('writing', file=sys.stderr, flush=True)  # mmengine logs to stdout
sys.stdin.readline()  # the test lets it finish
metric.process({}, [sample('b.png')])
metric.compute_metrics(metric.results)
'''


def _lock_line(folder: Path) -> str:
    record = json.loads((folder / '.writer.lock').read_text())
    return (f'{folder}: another run is writing this probability dump (pid {record["pid"]} on '
            f'{record["host"]}, since {record["started"]}); wait for it or write elsewhere '
            f'(remove {folder / ".writer.lock"} only if that run is gone)')


def test_a_second_writer_is_refused_before_its_inference(tmp_path):
    """Before: a second tools/test.py --save-probs into the same --out, started while the
    first ran, mixed both models' images into a dump marked complete."""
    from mmseg.registry import METRICS

    import handbone_mmseg.evaluation.dice_metric  # noqa: F401  (registers the metric)
    from handbone_mmseg.cli import error_line
    folder = tmp_path / 'run' / 'probs'
    first = subprocess.Popen([sys.executable, '-c', WRITER, str(folder)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr.readline() == 'writing\n'
        record = json.loads((folder / '.writer.lock').read_text())
        assert (record['pid'], record['host']) == (first.pid, socket.gethostname())
        # the second run's evaluator is built before its first forward pass
        with pytest.raises(ProbDumpError) as error:
            METRICS.build(dict(type='MultiLabelDiceMetric', prob_dir=str(folder)))
        assert error_line(error.value) == f'error: {_lock_line(folder)}'
        first.stdin.write('\n')
        first.stdin.close()
        assert first.wait(timeout=120) == 0
    finally:
        first.kill()
        first.wait()
    dump = ProbDump(folder)  # the first run's, whole
    assert dump.names == ['a.png', 'b.png']
    assert dump.load('b.png').unique().tolist() == pytest.approx([230 / 255])  # 0.9's level
    assert sorted(p.name for p in folder.iterdir()) == ['a.npz', 'b.npz', 'index.json']


def test_the_lock_of_a_dead_run_is_taken_over_and_released(tmp_path):
    from handbone_mmseg.classes import CLASSES
    from handbone_mmseg.evaluation.dice_metric import MultiLabelDiceMetric
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    lock = tmp_path / '.writer.lock'
    lock.write_text(json.dumps(dict(pid=dead.pid, host=socket.gethostname(), started='x')))
    metric = MultiLabelDiceMetric(prob_dir=str(tmp_path))
    assert json.loads(lock.read_text())['pid'] == os.getpid()
    metric.dataset_meta = dict(classes=CLASSES)
    probs = torch.full((len(CLASSES), 4, 4), 0.2)
    metric.process({}, [dict(img_path='/d/a.png', seg_logits=dict(data=probs),
                             pred_sem_seg=dict(data=probs > 0.5))])
    metric.compute_metrics(metric.results)
    assert not lock.exists() and ProbDump(tmp_path).names == ['a.png']


@pytest.mark.parametrize('record', [
    dict(pid=1, host='another-node', started='2026-12-01 10:00:00'),  # cannot be checked
    None,  # being written this instant, or damaged
])
def test_a_lock_that_cannot_be_proven_stale_is_kept(tmp_path, record):
    lock = tmp_path / '.writer.lock'
    lock.write_text('' if record is None else json.dumps(record))
    with pytest.raises(ProbDumpError) as error:
        lock_dump(tmp_path)
    holder = 'a writer whose record cannot be read' if record is None else \
        'pid 1 on another-node, since 2026-12-01 10:00:00'
    assert str(error.value) == (
        f'{tmp_path}: another run is writing this probability dump ({holder}); wait for it '
        f'or write elsewhere (remove {lock} only if that run is gone)')
    assert lock.read_text() == ('' if record is None else json.dumps(record))
