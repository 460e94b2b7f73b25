"""tools/predict.py: every output format, DICOM metadata, checks before inference, nothing
written half, no progress bar off a terminal."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from handbone_mmseg.classes import CLASSES, NUM_CLASSES
from handbone_mmseg.evaluation import check_submission
from handbone_mmseg.io.prob_dump import ProbDump
from handbone_mmseg.io.submission import read_submission
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT, load_tool, random_checkpoint

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
SIZE = 80


@pytest.fixture(scope='module')
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('predict')
    generate_phantom(root / 'data', patients=1, size=SIZE, seed=6, test_patients=1)
    checkpoint = random_checkpoint(CONFIG, root / 'random.pth', {'model.prior_prob': None})
    return dict(root=root, images=root / 'data' / 'test' / 'DCM', checkpoint=checkpoint)


def predict(setup: dict, out: Path, *args: str) -> None:
    load_tool('predict').main([CONFIG, str(setup['checkpoint']), *args, '--out', str(out),
                               '--cfg-options', 'model.prior_prob=None'])


def test_every_format(setup, tmp_path, capsys):
    pytest.importorskip('pydicom')
    from handbone_mmseg.io.dicom import write_dicom
    png = sorted(setup['images'].rglob('*.png'))
    dcm = write_dicom(tmp_path / 'scan.dcm', cv2.imread(str(png[0]), cv2.IMREAD_GRAYSCALE),
                      WindowCenter=128, WindowWidth=256, PixelSpacing=[0.2, 0.2])
    out = tmp_path / 'out'
    predict(setup, out, str(setup['images']), str(dcm), '--format', 'csv', 'png', 'overlay',
            'coco', 'npz', '--batch-size', '2')
    captured = capsys.readouterr()
    assert 'predicted 3 images' in captured.out
    assert '\r' not in captured.err and '━' not in captured.err  # no bar off a terminal

    names = [p.name for p in png] + ['scan.dcm']
    assert check_submission(out / 'submission.csv', shape=(SIZE, SIZE)) == []
    masks = dict(read_submission(out / 'submission.csv', (SIZE, SIZE)))
    assert sorted(masks) == sorted(names)
    np.testing.assert_array_equal(masks['scan.dcm'], masks[png[0].name])

    for name in names:  # one 8-bit mask per class
        stem = Path(name).stem
        files = sorted((out / 'masks' / stem).iterdir())
        assert [f.name for f in files] == [f'{c + 1:02d}_{n}.png' for c, n in
                                           enumerate(CLASSES)]
        first = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
        assert first.dtype == np.uint8 and set(np.unique(first)) <= {0, 255}
        np.testing.assert_array_equal(first == 255, masks[name][0])
        assert cv2.imread(str(out / 'overlays' / f'{stem}.png')).shape == (SIZE, SIZE, 3)

    coco = json.loads((out / 'predictions.coco.json').read_text())
    images = {img['id']: img for img in coco['images']}
    assert sorted(img['file_name'] for img in images.values()) == sorted(names)
    assert [img['pixel_spacing'] for img in images.values()
            if img['file_name'] == 'scan.dcm'] == [[0.2, 0.2]]
    for ann in coco['annotations']:
        rle = dict(ann['segmentation'], counts=ann['segmentation']['counts'].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool),
                                      masks[images[ann['image_id']]['file_name']][
                                          ann['category_id'] - 1])
        assert 0.5 < ann['score'] <= 1.0

    dump = ProbDump(out / 'probs')
    assert sorted(dump.names) == sorted(names)
    assert dump.images['scan.dcm']['pixel_spacing'] == [0.2, 0.2]
    assert dump.load('scan.dcm').shape == (NUM_CLASSES, SIZE, SIZE)
    meta = {m['name']: m for m in json.loads((out / 'images.json').read_text())}
    assert meta['scan.dcm']['pixel_spacing'] == [0.2, 0.2]
    assert meta[png[0].name]['ori_shape'] == [SIZE, SIZE]
    assert not list(out.glob('.predict-*'))  # the staging folder is gone


KILLED = '''
import os, signal, sys
from handbone_mmseg.convert.predictions import PredictionWriter
writer = PredictionWriter(sys.argv[1], ['csv', 'png'])
for c in range(23):  # what a run killed after one image leaves: 23 to 46 files
    (writer.stage / 'masks' / 'a').mkdir(parents=True, exist_ok=True)
    (writer.stage / 'masks' / 'a' / f'{c:02d}.png').write_bytes(b'png')
os.kill(os.getpid(), signal.SIGKILL)
'''


def test_a_rerun_removes_the_staging_folder_of_a_killed_run(setup, tmp_path, capsys):
    """Before: a killed run's hidden staging folder stayed through every later run."""
    out = tmp_path / 'out'
    killed = subprocess.Popen([sys.executable, '-c', KILLED, str(out)], cwd=ROOT)
    assert killed.wait(timeout=120) == -signal.SIGKILL
    (stale, ) = out.glob('.predict-*')
    assert json.loads((stale / '.owner.json').read_text())['pid'] == killed.pid
    assert len(list(stale.rglob('*.png'))) == 23
    # what cannot be proven stale stays: a live writer, another host's, one without a record
    keep = {name: out / f'.predict-{name}' for name in ('live', 'other-host', 'unrecorded')}
    for name, folder in keep.items():
        folder.mkdir()
        if name != 'unrecorded':
            (folder / '.owner.json').write_text(json.dumps(dict(
                pid=os.getpid() if name == 'live' else 1,
                host=socket.gethostname() if name == 'live' else 'another-node')))
    predict(setup, out, str(setup['images']))
    assert f'removed {stale}: the staging folder of a run that was killed' in \
        capsys.readouterr().out
    assert sorted(out.glob('.predict-*')) == sorted(keep.values())
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith('.')) == [
        'images.json', 'submission.csv']


def test_an_unwritable_output_folder_stops_before_the_model(setup, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    # a missing checkpoint would fail later: the output folder is checked first
    with pytest.raises(SystemExit, match=f'error: {blocker / "out"}: cannot write'):
        load_tool('predict').main([CONFIG, str(tmp_path / 'missing.pth'),
                                   str(setup['images']), '--out', str(blocker / 'out')])


def test_a_failing_image_leaves_the_last_outputs_alone(setup, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'submission.csv').write_text('the previous run\n')
    broken = tmp_path / 'inputs' / 'zz_broken.png'
    broken.parent.mkdir()
    broken.write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(30))
    for png in setup['images'].rglob('*.png'):
        (tmp_path / 'inputs' / png.name).write_bytes(png.read_bytes())
    with pytest.raises(SystemExit, match='zz_broken.png: cannot decode image'):
        predict(setup, out, str(broken.parent), '--format', 'csv', 'npz', 'png')
    assert sorted(p.name for p in out.iterdir()) == ['submission.csv']
    assert (out / 'submission.csv').read_text() == 'the previous run\n'


def test_two_inputs_of_one_name_are_refused(setup, tmp_path):
    png = next(setup['images'].rglob('*.png'))
    (tmp_path / 'a').mkdir()
    copy = tmp_path / 'a' / png.name
    copy.write_bytes(png.read_bytes())
    with pytest.raises(SystemExit, match=f'same name as {png}'):
        predict(setup, tmp_path / 'out', str(png), str(copy))


def test_a_dicom_without_pixels_stops_before_the_model(tmp_path):
    pydicom = pytest.importorskip('pydicom')
    from handbone_mmseg.io.dicom import write_dicom
    bad = write_dicom(tmp_path / 'report.dcm', np.zeros((8, 8), np.uint8))
    ds = pydicom.dcmread(bad)
    del ds.PixelData
    ds.save_as(bad, enforce_file_format=True)
    with pytest.raises(SystemExit, match=f'error: {bad}: DICOM has no pixel data'):
        load_tool('predict').main([CONFIG, str(tmp_path / 'missing.pth'), str(bad),
                                   '--out', str(tmp_path / 'out')])


def test_a_truncated_last_dicom_stops_before_the_model(setup, tmp_path):
    """Before: its header passed the check, and it failed after every image before it was
    inferred (issue 22)."""
    pytest.importorskip('pydicom')
    from handbone_mmseg.io.dicom import write_dicom
    inputs = tmp_path / 'inputs'
    inputs.mkdir()
    scans = [write_dicom(inputs / f'scan{k}.dcm', cv2.imread(str(png), cv2.IMREAD_GRAYSCALE))
             for k, png in enumerate(sorted(setup['images'].rglob('*.png')))]
    bad = scans[-1]
    bad.write_bytes(bad.read_bytes()[:bad.stat().st_size - SIZE * SIZE // 2])
    # a missing checkpoint would fail later: every input is decoded first
    with pytest.raises(SystemExit) as err:
        load_tool('predict').main([CONFIG, str(tmp_path / 'missing.pth'), str(inputs),
                                   '--out', str(tmp_path / 'out')])
    assert str(err.value).startswith(f'error: {bad}: cannot decode the pixel data (The '
                                     'number of bytes of pixel data is less than expected')


def test_progress_bar_yields_every_item_on_and_off(capsys):
    from handbone_mmseg.utils.progress import track
    assert list(track(range(5), description='x', enabled=True)) == list(range(5))
    assert list(track(iter(range(3)))) == [0, 1, 2]  # stderr is not a terminal: no bar
    assert capsys.readouterr().out == ''
