"""What a week of hostile use broke in the runs themselves (issue 12): the launchers' Python,
resume in a copied or damaged work dir, half-rewritten probability dumps, one-line errors,
absurd weights and grids, huge RLE fields, temporary files of killed tools.

Each test fails on the code before the fix; the reason is in its docstring.
"""
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.cli import error_line, run_tool
from handbone_mmseg.evaluation import MultiLabelDiceMetric
from handbone_mmseg.evaluation.submission_check import check_submission, inspect_submission
from handbone_mmseg.functional.voting import check_weights, soft_vote
from handbone_mmseg.io import save_probs, write_index
from handbone_mmseg.io.annotations import AnnotationError
from handbone_mmseg.io.atomic import atomic_open
from handbone_mmseg.io.submission import write_submission
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT, all_bones, load_tool, square, write_case

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
VENV_PYTHON = ROOT / '.venv' / 'bin' / 'python'


# --- the launchers: the project's venv, not whatever `python` is on PATH ---------------

def _bin_without_python(tmp_path: Path) -> str:
    """A PATH with bash and dirname only: no `python`, no `python3`."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ('bash', 'dirname'):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason='no .venv (make setup)')
def test_dist_train_uses_the_venv_without_python_on_path(tmp_path):
    """Before: `python -m torch.distributed.run` -> `python: command not found` (127)."""
    env = {'PATH': _bin_without_python(tmp_path), 'DRY_RUN': '1'}
    done = subprocess.run(['bash', str(ROOT / 'tools' / 'dist_train.sh'), CONFIG, '4',
                           '--cfg-options', 'fold=1'], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == [str(VENV_PYTHON), '-m', 'torch.distributed.run']
    assert '--nproc_per_node=4' in done.stdout and 'tools/train.py' in done.stdout
    assert f'python {VENV_PYTHON} (the project venv)' in done.stderr


def test_dist_run_without_venv_takes_python3_and_says_why(tmp_path):
    (tmp_path / 'tools').mkdir()
    for script in ('dist_run.sh', 'launcher.sh'):
        shutil.copy(ROOT / 'tools' / script, tmp_path / 'tools')
    path = _bin_without_python(tmp_path)
    (Path(path) / 'python3').symlink_to(sys.executable)
    done = subprocess.run(['bash', str(tmp_path / 'tools' / 'dist_run.sh'), 'test.py', '2'],
                          env={'PATH': path, 'DRY_RUN': '1'}, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(Path(path) / 'python3'))
    assert 'no ' in done.stderr and '.venv (make setup creates it)' in done.stderr


# --- resume: from the run's own work dir, never deleting outside it --------------------

@pytest.fixture(scope='module')
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('phantom')
    generate_phantom(root, patients=5, size=96, seed=1, test_patients=1)
    return root


def train_options(data: Path, iters: int) -> list[str]:
    opts = {
        'data_root': data, 'train_dataloader.batch_size': 1,
        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'train_scale': (64, 64), 'crop_size': (64, 64), 'test_scale': (64, 64),
        'train_cfg.max_iters': iters, 'train_cfg.val_interval': 2,
        'default_hooks.checkpoint.interval': 2, 'default_hooks.logger.interval': 1,
    }
    return [f'{k}={v}'.replace(' ', '') for k, v in opts.items()]


@pytest.mark.slow
def test_resume_in_a_copied_work_dir_stays_in_the_copy(phantom, tmp_path):
    """Before: the copy resumed from the original's iter_2.pth (`last_checkpoint` holds an
    absolute path) and kept the original's best checkpoint as the one to delete next."""
    original, copy = tmp_path / 'W', tmp_path / 'W2'
    train = load_tool('train')
    train.main([CONFIG, '--work-dir', str(original), '--cfg-options',
                *train_options(phantom, 2)])
    best = list(original.glob('best_mDice_iter_2.pth'))
    assert best and (original / 'iter_2.pth').is_file()
    before = {p.name: p.stat().st_mtime_ns for p in original.iterdir() if p.is_file()}
    shutil.copytree(original, copy, symlinks=True)
    assert str(original) in (copy / 'last_checkpoint').read_text()

    train.main([CONFIG, '--work-dir', str(copy), '--resume', '--cfg-options',
                *train_options(phantom, 4)])
    log = sorted(copy.glob('*/*.log'))[-1].read_text()
    assert f'Load checkpoint from {copy / "iter_2.pth"}' in log
    assert 'resumed epoch: 0, iter: 2' in log
    # the checkpoint hook's best path (what it deletes on a new best) is the copy's
    info = torch.load(copy / 'iter_4.pth', map_location='cpu',
                      weights_only=False)['message_hub']['runtime_info']
    assert Path(info['best_ckpt']).parent == copy
    assert {p.name: p.stat().st_mtime_ns
            for p in original.iterdir() if p.is_file()} == before  # untouched


def _fake_checkpoint(path: Path, iteration: int) -> Path:
    torch.save({'meta': {'iter': iteration}, 'state_dict': {}}, path)
    return path


def _resume_from(work: Path, *extra: str) -> str | None:
    train = load_tool('train')
    return train.setup(train.parse_args([CONFIG, '--work-dir', str(work), '--resume',
                                         *extra])).load_from


@pytest.mark.parametrize('damage', ['truncated', 'deleted', 'empty pointer', 'outside'])
def test_resume_falls_back_to_the_newest_loadable_checkpoint(tmp_path, capsys, damage):
    """Before: mmengine loaded the path in `last_checkpoint` as it was (a traceback for a
    truncated or deleted file, a fresh start for an empty pointer, another dir's file)."""
    work = tmp_path / 'work'
    work.mkdir()
    good = _fake_checkpoint(work / 'iter_2.pth', 2)
    last = _fake_checkpoint(work / 'iter_4.pth', 4)
    pointer = str(last)
    if damage == 'truncated':
        last.write_bytes(last.read_bytes()[:100])
    elif damage == 'deleted':
        last.unlink()
    elif damage == 'empty pointer':
        pointer = ''
    else:  # points into another work dir; this one has no iter_4.pth
        pointer = str(_fake_checkpoint(tmp_path / 'iter_6.pth', 6))
        last.unlink()
    (work / 'last_checkpoint').write_text(pointer)
    expected = last if damage == 'empty pointer' else good  # the newest that loads
    assert _resume_from(work) == str(expected)
    err = capsys.readouterr().err
    assert f'falling back to {expected}' in err
    assert {'truncated': f'{last}: truncated', 'deleted': f'{last}: no such file',
            'empty pointer': 'last_checkpoint is empty',
            'outside': 'outside the work dir'}[damage] in err


def test_resume_prefers_the_work_dirs_own_copy(tmp_path, capsys):
    work = tmp_path / 'W2'
    work.mkdir()
    inside = _fake_checkpoint(work / 'iter_4.pth', 4)
    (work / 'last_checkpoint').write_text(str(tmp_path / 'W' / 'iter_4.pth'))
    assert _resume_from(work) == str(inside)
    assert 'outside the work dir; resuming from' in capsys.readouterr().err


def test_resume_without_a_loadable_checkpoint_is_one_line(tmp_path, capsys):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'iter_2.pth').write_bytes(b'PK\x03\x04 cut short')
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'))
    train = load_tool('train')
    sys_argv = sys.argv
    sys.argv = ['train.py', CONFIG, '--work-dir', str(work), '--resume']
    try:
        status = run_tool(train.main)
    finally:
        sys.argv = sys_argv
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith(f'error: {work / "iter_2.pth"}: cannot resume')
    assert not any('Traceback' in line for line in err)


# --- probability dumps: whole or refused -----------------------------------------------

def _dump_samples(names: list[str], value: float) -> list[dict]:
    probs = torch.full((len(CLASSES), 8, 8), value)
    return [dict(img_path=f'/data/{name}', seg_logits=dict(data=probs),
                 pred_sem_seg=dict(data=probs > 0.5)) for name in names]


def test_ensemble_refuses_a_dump_whose_rewrite_was_killed(tmp_path, capsys):
    """Before: a second run killed after one image left model B's file under model A's
    index.json, and tools/ensemble.py wrote a submission from the mix (exit 0)."""
    probs = tmp_path / 'val' / 'probs'
    names = ['a.png', 'b.png']
    first = MultiLabelDiceMetric(prob_dir=str(probs))
    first.dataset_meta = dict(classes=CLASSES)
    first.process({}, _dump_samples(names, 0.9))
    first.compute_metrics(first.results)
    second = MultiLabelDiceMetric(prob_dir=str(probs))  # another model; killed after a.png
    second.dataset_meta = dict(classes=CLASSES)
    second.process({}, _dump_samples(names[:1], 0.1))
    out = tmp_path / 'sub.csv'
    ensemble = load_tool('ensemble')
    status = run_tool(lambda: ensemble.main([str(probs), '--out', str(out)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and not out.exists()
    assert len(err) == 1 and err[0].startswith(f'error: {probs}: incomplete probability dump')


# --- one line per data or usage error ----------------------------------------------------

@pytest.mark.slow
def test_train_on_a_two_point_polygon_ends_in_one_line(tmp_path):
    """Before: the right message at the bottom of a 20-50-line traceback."""
    bones = all_bones()
    bones[3]['points'] = square(1, 1, 5)[:2]
    for p in range(1, 6):
        write_case(tmp_path, f'ID{p:03d}', f'image16611308{p:05d}', annotations=all_bones())
    bad = write_case(tmp_path, 'ID006', 'image1661130899999', annotations=bones)
    json_path = bad.parents[2] / 'outputs_json' / 'ID006' / 'image1661130899999.json'
    done = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), CONFIG, '--work-dir',
         str(tmp_path / 'work'), '--cfg-options', f'data_root={tmp_path}'],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'PYTHONWARNINGS': 'ignore', 'OMP_NUM_THREADS': '1'})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1
    assert lines[-1].startswith(f'error: {json_path}: '), done.stderr[-2000:]
    assert len(lines) < 10, done.stderr[-2000:]
    assert 'Traceback' not in done.stderr


def test_run_tool_one_line_and_debug_keeps_the_traceback(capsys, monkeypatch):
    def main() -> None:
        raise AnnotationError('class `HandBoneDataset` in handbone_mmseg/datasets/handbone.py:'
                              ' x.json: polygon of finger-4 has 2 points, need at least 3')

    monkeypatch.setattr(sys, 'argv', ['tool.py'])
    assert run_tool(main) == 1
    assert capsys.readouterr().err == (
        'error: x.json: polygon of finger-4 has 2 points, need at least 3\n')
    monkeypatch.setattr(sys, 'argv', ['tool.py', '--debug'])
    assert run_tool(main) == 1
    err = capsys.readouterr().err
    assert 'Traceback' in err and err.splitlines()[-1].startswith('error: x.json')
    assert sys.argv == ['tool.py']  # the tool's parser never sees --debug
    monkeypatch.setenv('HANDBONE_DEBUG', '1')
    assert run_tool(main) == 1 and 'Traceback' in capsys.readouterr().err


def test_error_line_of_a_message_exit():
    assert error_line('a.csv: bad\nout.csv was not written') == (
        'error: a.csv: bad out.csv was not written')
    assert error_line('error: x') == 'error: x'


# --- guards: weights and grids -------------------------------------------------------------

@pytest.fixture
def dumps(tmp_path) -> list[str]:
    folders = []
    for model in range(2):
        folder = tmp_path / f'm{model}' / 'probs'
        entries = [(name, save_probs(folder, name, torch.rand(len(CLASSES), 8, 8)))
                   for name in ('a.png', 'b.png')]
        write_index(folder, CLASSES, 'uint8', 1.0, entries)
        folders.append(str(folder))
    return folders


@pytest.mark.parametrize('weights, problem', [
    (['inf', '1'], 'weights must be positive and finite'),
    (['nan', '1'], 'weights must be positive and finite'),
    (['1e308', '1e308'], 'weights must have a finite sum'),
])
def test_ensemble_refuses_absurd_weights(dumps, tmp_path, capsys, weights, problem):
    """Before: `inf 1` wrote an all-empty submission (exit 0), `1e308 1e308` a traceback."""
    out = tmp_path / 'sub.csv'
    ensemble = load_tool('ensemble')
    status = run_tool(lambda: ensemble.main([*dumps, '--weights', *weights, '--out', str(out)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and not out.exists()
    assert len(err) == 1 and err[0].startswith('error: ') and problem in err[0]


def test_huge_finite_weights_vote_like_equal_weights():
    """Before: 1e300 * p overflowed float32 to inf, and inf / inf gave NaN."""
    probs = [torch.full((2, 2, 2), 0.2), torch.full((2, 2, 2), 0.6)]
    assert torch.allclose(soft_vote(probs, [1e300, 1e300]), torch.full((2, 2, 2), 0.4))
    assert check_weights([2, 1, 1]) == [0.5, 0.25, 0.25]


def test_tune_thresholds_refuses_a_grid_of_a_billion(dumps, tmp_path, capsys):
    """Before: `--grid 0.05 0.95 1e-9` built 9e8 candidates and never ended."""
    tune = load_tool('tune_thresholds')
    argv = [*dumps, '--data-root', str(tmp_path), '--out', str(tmp_path / 't.json'),
            '--grid', '0.05', '0.95', '1e-9']

    def alarm(signum, frame):
        raise TimeoutError('tools/tune_thresholds.py hangs on the grid')

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(10)
    try:
        status = run_tool(lambda: tune.main(argv))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1
    assert 'makes 900000001 candidates, at most 1000' in err[0]


# --- the submission checker: flat memory, strict spaces --------------------------------------

def _submission(path: Path, long_rle: str, rle_row: int = 5) -> Path:
    with open(path, 'w') as f:
        f.write('image_name,class,rle\n')
        for c, name in enumerate(CLASSES):
            f.write(f'a.png,{name},{long_rle if c == rle_row else "1 2"}\n')
    return path


def _runs_text(n_chars: int) -> str:
    pairs = n_chars // 12 + 1
    starts = 1 + 4 * np.arange(pairs, dtype=np.int64) + 10**9
    runs = np.stack([starts, np.full(pairs, 3)], 1).ravel()
    return ' '.join(map(str, runs.tolist()))


def _peak(path: Path) -> tuple[list[str], int]:
    tracemalloc.start()
    try:
        problems = check_submission(path, shape=(100_000, 100_000))
        return problems, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_checker_memory_stays_flat_for_a_huge_field(tmp_path):
    """Before: the csv module held the field and `split()` a string object per number:
    peak memory about 15x the field (a 200 MB field took 3.9 GB)."""
    small = _submission(tmp_path / 'small.csv', _runs_text(2 << 20))
    large = _submission(tmp_path / 'large.csv', _runs_text(20 << 20))
    assert large.stat().st_size > 20 << 20
    start = time.perf_counter()
    small_problems, small_peak = _peak(small)
    large_problems, large_peak = _peak(large)
    assert small_problems == [] and large_problems == []
    assert large_peak < 2 * small_peak + (4 << 20), (small_peak, large_peak)
    assert large_peak < 16 << 20  # a few pieces of 1 MiB, not the 20 MB field
    assert time.perf_counter() - start < 20


def test_checker_finds_a_problem_deep_in_a_streamed_field(tmp_path):
    text = _runs_text(3 << 20)
    middle = text.index(' ', len(text) // 2)
    path = _submission(tmp_path / 's.csv', text[:middle] + '\t' + text[middle + 1:])
    problems, images = inspect_submission(path, shape=(100_000, 100_000))
    assert images == 1 and len(problems) == 1
    assert f'{path}:7: image a.png, class {CLASSES[5]}: RLE has a tab (character ' \
        f'{middle + 1})' in problems[0]


@pytest.mark.parametrize('rle, problem', [
    ('1 2 ', 'RLE ends with a trailing space (character 4)'),
    ('1 2  ', 'RLE has two spaces in a row (character 5)'),
    ('1  2', 'RLE has two spaces in a row (character 3)'),
    (' 1 2', 'RLE starts with a space'),
    ('1\t2', 'RLE has a tab (character 2); numbers are separated by single spaces'),
])
def test_checker_refuses_misplaced_whitespace_in_one_line(tmp_path, rle, problem):
    """Before: tabs and doubled spaces passed; a trailing space was not named."""
    path = _submission(tmp_path / 's.csv', rle)
    assert check_submission(path, shape=(8, 8)) == [
        f'{path}:7: image a.png, class {CLASSES[5]}: {problem}']


# --- temporary files of killed tools ---------------------------------------------------------

WRITER = '''
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('atomic', sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
atomic.terminate_on_sigterm()  # what run_tool does for every tool
with atomic.atomic_open(sys.argv[2], 'w') as f:
    f.write('image_name,class,rle\\n')
    f.flush()
    print('writing', flush=True)
    while True:
        f.write('a.png,finger-1,' + '1 2 ' * 1000 + '\\n')
        time.sleep(0.001)
'''


def test_sigterm_leaves_no_temporary_file(tmp_path):
    """Before: SIGTERM killed the writer inside atomic_open and its .tmp file stayed."""
    out = tmp_path / 'submission.csv'
    proc = subprocess.Popen([sys.executable, '-c', WRITER, str(ROOT / 'handbone_mmseg' / 'io' /
                                                               'atomic.py'), str(out)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == 'writing\n'
        time.sleep(0.2)
        assert [p.name for p in tmp_path.iterdir()] == [f'.submission.csv.{proc.pid}.tmp']
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143
    finally:
        proc.kill()
        proc.wait()
    assert list(tmp_path.iterdir()) == []


def test_next_write_removes_temporary_files_of_dead_processes(tmp_path):
    """Before: a SIGKILLed writer's hidden temporary file stayed beside the output forever."""
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    out = tmp_path / 'submission.csv'
    stale = tmp_path / f'.submission.csv.{dead.pid}.tmp'
    alive = tmp_path / f'.submission.csv.{os.getppid()}.tmp'  # another process writing now
    other = tmp_path / f'.dice_per_class.csv.{dead.pid}.tmp'  # another output's
    for path in (stale, alive, other):
        path.write_text('partial')
    with atomic_open(out) as f:
        f.write('done')
    assert out.read_text() == 'done'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, alive.name, other.name])


def test_tools_turn_sigterm_into_a_clean_exit(monkeypatch):
    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(sys, 'argv', ['tool.py'])
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        def main() -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises SystemExit(143) before this ends

        assert run_tool(main) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_every_tool_runs_through_run_tool():
    skip = {'demo.py', 'torchvision_cpu_shim.py'}  # demo runs the tools; the shim is set-up
    for path in sorted((ROOT / 'tools').glob('*.py')):
        if path.name not in skip:
            assert 'sys.exit(run_tool(main))' in path.read_text() or \
                'status = run_tool(main)' in path.read_text(), path.name


# --- issue 22: integer switches, outputs checked before the work, checkpoint files -----------

@pytest.mark.parametrize('option, message', [
    ('n_folds=abc', "n_folds must be an integer >= 2, got 'abc'"),
    ('fold=one', "fold must be an integer >= 0, got 'one'"),
])
def test_a_non_integer_fold_is_a_usage_error(tmp_path, capsys, monkeypatch, option, message):
    """Before: a bare TypeError traceback from the dataset ('>=' between str and int)."""
    monkeypatch.setattr(sys, 'argv', ['train.py'])
    train = load_tool('train')
    status = run_tool(lambda: train.main([CONFIG, '--work-dir', str(tmp_path / 'work'),
                                          '--cfg-options', option]))
    err = capsys.readouterr().err
    assert status == 2 and 'Traceback' not in err
    assert err.splitlines()[-1] == f'error: {message}'
    assert not (tmp_path / 'work').exists()


def _full_disk(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    """Before: `[Errno 28] No space left on device`, naming no file, after all the work."""
    out = tmp_path / 'run' / 'submission.csv'
    monkeypatch.setattr(os, 'fsync', _full_disk)
    with pytest.raises(OSError) as err:
        write_submission(out, [('a.png', [''] * len(CLASSES))])
    assert error_line(err.value) == f'error: {out}: could not write (No space left on device)'
    assert err.value.errno == errno.ENOSPC
    assert list(out.parent.iterdir()) == []  # no temporary file left
    # a write of the caller's that the disk refuses names the file too ...
    with pytest.raises(OSError) as err:
        with atomic_open(out):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(err.value) == f'{out}: could not write (No space left on device)'
    # ... and an error of another file (a dump read while writing) passes unchanged
    other = FileNotFoundError(errno.ENOENT, 'No such file or directory', 'model0/a.npz')
    with pytest.raises(FileNotFoundError) as err:
        with atomic_open(out):
            raise other
    assert err.value is other


def test_a_folder_in_place_of_the_output_names_it(tmp_path):
    out = tmp_path / 'submission.csv'
    out.mkdir()
    with pytest.raises(OSError) as err:
        write_submission(out, [('a.png', [''] * len(CLASSES))])
    assert str(err.value) == f'{out}: could not write (Is a directory)'


def test_test_refuses_a_full_disk_before_inference(tmp_path, monkeypatch):
    """Before: an empty temporary file passed the --out check on a full disk, and the CSV
    failed after every image was inferred."""
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'never loaded')
    test = load_tool('test')
    args = test.parse_args([CONFIG, str(checkpoint), '--out', str(tmp_path / 'run')])
    monkeypatch.setattr(os, 'fsync', _full_disk)
    with pytest.raises(SystemExit) as err:
        test.setup(args)
    assert err.value.code == (f'{tmp_path / "run"}: cannot write the outputs here '
                              '(No space left on device)')


def _no_work(*args, **kwargs):
    raise AssertionError('the work started before the output was checked')


@pytest.mark.parametrize('problem', ['folder', 'full disk'])
def test_tune_thresholds_checks_its_output_before_the_search(dumps, tmp_path, capsys,
                                                             monkeypatch, problem):
    """Before: an unwritable --out failed after the whole search."""
    out = tmp_path / 'thresholds.json'
    if problem == 'folder':
        out.mkdir()
    else:
        monkeypatch.setattr(os, 'fsync', _full_disk)
    tune = load_tool('tune_thresholds')
    monkeypatch.setattr(tune, 'load_labels', _no_work)
    status = run_tool(lambda: tune.main([*dumps, '--data-root', str(tmp_path), '--out',
                                         str(out)]))
    assert status == 1
    assert capsys.readouterr().err == {
        'folder': f'error: {out}: is a folder; give the name of the file to write\n',
        'full disk': f'error: {out}: cannot write here (No space left on device)\n',
    }[problem]


def test_ensemble_refuses_a_folder_as_out_before_any_work(dumps, tmp_path, capsys,
                                                         monkeypatch):
    """Before: every image was voted and encoded, then the final rename failed."""
    out = tmp_path / 'submission.csv'
    out.mkdir()
    ensemble = load_tool('ensemble')
    monkeypatch.setattr(ensemble, 'ProbDump', _no_work)
    status = run_tool(lambda: ensemble.main([*dumps, '--out', str(out)]))
    assert status == 1
    assert capsys.readouterr().err == (
        f'error: {out}: is a folder; give the name of the file to write\n')


@pytest.mark.parametrize('damage, problem', [
    ('truncated', 'truncated or damaged: File is not a zip file'),
    ('png', "not the zip archive torch.save writes; it starts with b'\\x89PNG\\r\\n\\x1a\\n'"),
])
def test_a_file_that_is_no_checkpoint_says_so(tmp_path, damage, problem):
    """Before: `[Errno 22] Invalid argument` (truncated) or a message about mmap (a PNG)."""
    path = tmp_path / 'model.pth'
    if damage == 'truncated':
        torch.save({'state_dict': {'w': torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    else:
        ok, png = cv2.imencode('.png', np.zeros((8, 8), np.uint8))
        path.write_bytes(png.tobytes())
    test = load_tool('test')
    with pytest.raises(SystemExit) as err:
        test.setup(test.parse_args([CONFIG, str(path)]))
    assert err.value.code == f'{path}: not a checkpoint ({problem})'
