"""Data a real user brings that must be found, refused up front or read right (issue 12).

Each test mutates a small phantom (``generate_phantom``) the way a real data set goes wrong.
"""
import json
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

from handbone_mmseg.apis import check_data, load_config, train_loaders
from handbone_mmseg.apis.inferencer import inference_pipeline
from handbone_mmseg.classes import CLASSES
from handbone_mmseg.cli import run_tool
from handbone_mmseg.datasets import HandBoneDataset, LoadXrayFromFile
from handbone_mmseg.evaluation import score_submission
from handbone_mmseg.io import AnnotationError, find_images
from handbone_mmseg.io import images as images_module
from handbone_mmseg.io.submission import write_submission
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT, load_tool, random_checkpoint

LABELED = dict(img_path='train/DCM', seg_map_path='train/outputs_json')


def phantom(root: Path, patients: int = 2, test_patients: int = 0, **kwargs) -> Path:
    generate_phantom(root, patients, size=64, test_patients=test_patients, **kwargs)
    return root


def dataset(root: Path, prefix: dict = LABELED, **kwargs) -> HandBoneDataset:
    return HandBoneDataset(data_root=str(root), data_prefix=prefix, pipeline=[],
                           serialize_data=False, **kwargs)


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob('*.png'))


# --- item 4: one image discovery, which finds what a user calls an image ---------------

def test_upper_case_suffix_and_symlinked_patient_folder_are_found_by_every_tool(tmp_path):
    root = phantom(tmp_path / 'data', 1, test_patients=3, test_labels=True)
    test_dir = root / 'test' / 'DCM'
    upper = pngs(test_dir)[0]
    upper.rename(upper.with_suffix('.PNG'))
    # a patient folder kept on another disk, linked in
    elsewhere = tmp_path / 'other_disk' / 'ID004'
    elsewhere.parent.mkdir()
    shutil.move(test_dir / 'ID004', elsewhere)
    (test_dir / 'ID004').symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / 'loop').symlink_to(test_dir, target_is_directory=True)  # a cycle: no hang
    (test_dir / 'ID003' / '._image1661130828152.png').write_bytes(b'macOS resource fork')
    names = sorted(p.name for p in find_images(test_dir))
    assert len(names) == 6 and sum(n.endswith('.PNG') for n in names) == 1
    assert sum('ID004' in p.parts for p in find_images(test_dir)) == 2

    unlabeled = dataset(root, dict(img_path='test/DCM'))
    assert sorted(d['name'] for d in unlabeled.data_list) == names

    empty = [''] * len(CLASSES)
    submission = tmp_path / 'submission.csv'
    write_submission(submission, ((name, empty) for name in names))
    check = load_tool('check_submission').main
    assert check([str(submission), '--test-dir', str(test_dir), '--size', '64', '64']) == 0
    per_class, _, n_images = score_submission(submission, root, 'test/DCM',
                                              'test_labels/outputs_json')
    assert n_images == 6 and per_class.shape == (len(CLASSES), )

    # and a submission without the symlinked patient's images is incomplete
    short = tmp_path / 'short.csv'
    write_submission(short, ((n, empty) for n in names if n not in
                             {p.name for p in elsewhere.glob('*.png')}))
    assert check([str(short), '--test-dir', str(test_dir), '--size', '64', '64']) == 1


# --- item 5: one file name in two patient folders -------------------------------------

@pytest.mark.parametrize('split', ['train', 'val', 'all'])
def test_same_file_name_in_two_patient_folders_is_refused_naming_both(tmp_path, split):
    root = phantom(tmp_path, 4)
    first = pngs(root / 'train/DCM/ID001')[0]
    copy = root / 'train/DCM/ID002' / first.name
    shutil.copy(first, copy)
    shutil.copy(root / 'train/outputs_json/ID001' / first.with_suffix('.json').name,
                root / 'train/outputs_json/ID002' / first.with_suffix('.json').name)
    with pytest.raises(AnnotationError, match='same file name') as err:
        dataset(root, split=split, n_folds=2)
    assert str(first) in str(err.value) and str(copy) in str(err.value)


def test_same_file_name_in_the_unlabeled_test_split_is_refused(tmp_path):
    root = phantom(tmp_path, 1, test_patients=2)
    first = pngs(root / 'test/DCM/ID002')[0]
    shutil.copy(first, root / 'test/DCM/ID003' / first.name)
    with pytest.raises(AnnotationError, match=f'same file name as {first}'):
        dataset(root, dict(img_path='test/DCM'))


# --- item 6: size and bit depth ---------------------------------------------------------

def test_image_size_other_than_the_json_metadata_is_refused_naming_both(tmp_path):
    root = phantom(tmp_path)
    image = pngs(root / 'train/DCM')[0]
    ann = root / 'train/outputs_json' / image.relative_to(root / 'train/DCM').with_suffix(
        '.json')
    data = json.loads(ann.read_text())
    data['metadata'] = {'height': 2048, 'width': 2048}  # labeled on the full-size image
    ann.write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as err:
        dataset(root)
    message = str(err.value)
    assert '\n' not in message
    assert message == f'{ann}: metadata says 2048x2048 but {image} is 64x64'


def _with_sbit(png: bytes, bits: int) -> bytes:
    """The PNG with an sBIT chunk (one grey channel) right after its IHDR."""
    data = bytes([bits])
    chunk = struct.pack('>I', 1) + b'sBIT' + data + struct.pack('>I', zlib.crc32(b'sBIT' + data))
    return png[:33] + chunk + png[33:]


@pytest.fixture
def twelve_bit(tmp_path):
    """A phantom whose first image is a 16-bit grey PNG holding 12-bit values."""
    root = phantom(tmp_path)
    image = pngs(root / 'train/DCM')[0]
    grey = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    values = np.rint(grey.astype(np.float64) * 4095 / 255).astype(np.uint16)
    assert cv2.imwrite(str(image), values)
    return root, image, grey, values


def test_16_bit_png_without_sbit_is_refused_naming_the_file(twelve_bit):
    root, image, _, _ = twelve_bit
    with pytest.raises(AnnotationError, match='16-bit PNG without an sBIT') as err:
        dataset(root)
    assert str(err.value).startswith(f'{image}: ')
    with pytest.raises(AnnotationError, match='16-bit PNG without an sBIT'):
        LoadXrayFromFile()(dict(img_path=str(image)))


@pytest.mark.parametrize('shifted', [False, True], ids=['12-bit values', 'scaled to 16'])
def test_16_bit_png_with_sbit_is_scaled_from_its_bits(twelve_bit, shifted):
    root, image, grey, values = twelve_bit
    if shifted:  # the PNG rule: values scaled up to 16 bits, sBIT tells the source's bits
        values = values << 4
    ok, png = cv2.imencode('.png', values)
    image.write_bytes(_with_sbit(png.tobytes(), 12))
    info = next(d for d in dataset(root).data_list if d['img_path'] == str(image))
    assert info['ori_shape'] == (64, 64)
    loaded = LoadXrayFromFile()(dict(img_path=str(image)))['img']
    assert loaded.dtype == np.uint8 and loaded.shape == (64, 64, 3)
    assert np.abs(loaded[:, :, 0].astype(int) - grey).max() <= 1
    assert grey.max() > 100  # a real picture, not the near-black of the high byte alone


# --- item 8: fail before the work ---------------------------------------------------------

def test_unwritable_out_fails_before_inference(tmp_path):
    test = load_tool('test')
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'never loaded')
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    args = test.parse_args([str(ROOT / 'configs/tiny_cpu_handbone.py'), str(checkpoint),
                            '--out', str(blocker / 'run')])
    with pytest.raises(SystemExit, match=f'{blocker / "run"}: cannot write the outputs here'):
        test.setup(args)  # before the config, the checkpoint and any image


def test_truncated_validation_image_fails_when_the_split_is_built(tmp_path):
    root = phantom(tmp_path, 4)
    val = dataset(root, split='val', n_folds=2)
    bad = Path(val.data_list[0]['img_path'])
    bad.write_bytes(bad.read_bytes()[:200])  # header intact, pixels cut off
    dataset(root, split='train', n_folds=2)  # the training split only reads headers
    with pytest.raises(ValueError, match=f'{bad}: cannot decode image'):
        dataset(root, split='val', n_folds=2)
    with pytest.warns(UserWarning, match=f'skipping: {bad}'):
        kept = dataset(root, split='val', n_folds=2, skip_invalid=True)
    assert len(kept) == len(val) - 1


def test_truncated_validation_image_stops_training_before_its_first_iteration(tmp_path):
    root = phantom(tmp_path / 'data', 4)
    bad = Path(dataset(root, split='val', n_folds=2).data_list[0]['img_path'])
    bad.write_bytes(bad.read_bytes()[:200])
    work = tmp_path / 'work'
    with pytest.raises((ValueError, SystemExit), match=f'{bad}: cannot decode image'):
        load_tool('train').main([
            str(ROOT / 'configs/tiny_cpu_handbone.py'), '--work-dir', str(work),
            '--cfg-options', f'data_root={root}', 'n_folds=2',
            'train_cfg.max_iters=2', 'train_cfg.val_interval=2'])
    assert not list(work.rglob('*.pth'))  # not a step trained (the last one is saved)


def test_more_folds_than_patients_fails_before_fold_0(tmp_path, monkeypatch):
    root = phantom(tmp_path, 2)
    train_folds = load_tool('train_folds')

    def no_training(cmd, **kwargs):
        raise AssertionError(f'a fold started: {cmd}')

    monkeypatch.setattr(train_folds.subprocess, 'run', no_training)
    with pytest.raises(SystemExit, match='n_folds=3 but only 2 patients'):
        train_folds.main([str(ROOT / 'configs/tiny_cpu_handbone.py'), '--work-dir',
                          str(tmp_path / 'work'), '--cfg-options', f'data_root={root}',
                          'n_folds=3'])


# --- item 9: every shipped config takes any image shape the data set takes -----------------

@pytest.mark.parametrize('name', ['tiny_cpu_handbone', 'unetpp_tiny_cpu_handbone'])
def test_cheap_configs_predict_a_non_square_image_at_its_size(tmp_path, name):
    image = tmp_path / 'wide.png'
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (64, 96, 3), np.uint8))
    cfg = load_config(ROOT / 'configs' / f'{name}.py')
    cfg.model.pretrained = None
    init_default_scope('mmseg')
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    batch = pseudo_collate([inference_pipeline(cfg)(dict(img_path=str(image)))])
    with torch.no_grad():
        result = model.test_step(batch)[0]
    assert result.pred_sem_seg.data.shape == (len(CLASSES), 64, 96)


# --- issue 22: data errors first, test images decoded up front, one rule for numbers --------

CONFIG = str(ROOT / 'configs/tiny_cpu_handbone.py')
RUNNER_DUMP = ('System environment', 'Runtime environment', 'Environment', 'Config:')


def test_a_data_error_is_the_first_thing_train_prints(tmp_path, capfd, monkeypatch):
    """Before: the one-line error came after 482 to 507 lines of mmengine's environment and
    config dump."""
    root = phantom(tmp_path / 'data', 4)
    bad = sorted((root / 'train/outputs_json').rglob('*.json'))[-1]
    bad.write_text('{"annotations": [')
    monkeypatch.setattr(sys, 'argv', ['train.py'])
    train = load_tool('train')
    status = run_tool(lambda: train.main([CONFIG, '--work-dir', str(tmp_path / 'work'),
                                          '--cfg-options', f'data_root={root}', 'n_folds=2']))
    out, err = capfd.readouterr()
    assert status == 1
    assert not [line for line in out.splitlines() + err.splitlines()
                if line.strip().startswith(RUNNER_DUMP)]
    assert out.strip() == ''
    assert err.splitlines()[-1] == f'error: {bad}: malformed JSON (Expecting value at line 1)'
    assert 'Traceback' not in err


def test_the_runner_decodes_no_image_the_preflight_decoded(tmp_path, monkeypatch):
    """The validation fold is decoded once, by the check before the runner; the runner's
    build of the same split only looks at the files' sizes and times."""
    root = phantom(tmp_path, 4)
    cfg = load_config(CONFIG, {'data_root': str(root), 'n_folds': 2})
    decoded = []
    decode = images_module.read_image
    monkeypatch.setattr(images_module, 'read_image',
                        lambda path, grey=False: decoded.append(path) or decode(path, grey))
    counts = check_data(cfg, train_loaders(cfg))
    assert counts['train_dataloader'] + counts['val_dataloader'] == 8
    assert len(decoded) == counts['val_dataloader'] > 0
    init_default_scope('mmseg')
    val = DATASETS.build(cfg.val_dataloader.dataset)  # as the runner builds it
    assert len(val) == counts['val_dataloader'] and len(decoded) == len(val)
    changed = Path(decoded[0])
    changed.write_bytes(changed.read_bytes())  # rewritten: a new time, decoded again
    os.utime(changed, ns=(0, 0))
    DATASETS.build(cfg.val_dataloader.dataset)
    assert decoded[len(val):] == [str(changed)]


def test_the_check_builds_the_datasets_inside_a_wrapper(tmp_path):
    root = phantom(tmp_path, 4)
    cfg = load_config(CONFIG, {'data_root': str(root), 'n_folds': 2})
    train = cfg.train_dataloader.dataset
    cfg.train_dataloader.dataset = dict(type='RepeatDataset', times=3, dataset=train)
    bad = sorted((root / 'train/outputs_json').rglob('*.json'))[0]
    assert check_data(cfg, ['train_dataloader']) == {
        'train_dataloader': len(dataset(root, split='train', n_folds=2))}
    bad.write_text('[]')
    with pytest.raises(AnnotationError, match=f'^{bad}: no "annotations" list'):
        check_data(cfg, ['train_dataloader', 'val_dataloader'])


def test_a_truncated_test_image_stops_test_before_any_inference(tmp_path, monkeypatch):
    """Before: the header check passed, and the last image failed after every other one
    was inferred."""
    root = phantom(tmp_path / 'data', 1, test_patients=2)
    images = pngs(root / 'test/DCM')
    bad = images[-1]
    bad.write_bytes(bad.read_bytes()[:bad.stat().st_size // 2])
    checkpoint = random_checkpoint(CONFIG, tmp_path / 'model.pth')
    test = load_tool('test')
    monkeypatch.setattr(test, 'RUNNERS', None)  # building the runner would fail
    with pytest.raises(ValueError) as err:
        test.main([CONFIG, str(checkpoint), '--out', str(tmp_path / 'run'), '--cfg-options',
                   f'data_root={root}'])
    assert str(err.value) == f'{bad}: cannot decode image (missing, or not an image file)'


def _edit_first_json(root: Path, edit) -> tuple[Path, dict]:
    path = sorted((root / 'train/outputs_json').rglob('*.json'))[0]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path, data


def test_an_empty_annotations_list_is_refused_naming_the_file(tmp_path):
    """Before: the image trained as 29 empty masks, without a word."""
    root = phantom(tmp_path)
    ann, _ = _edit_first_json(root, lambda data: data.update(annotations=[]))
    with pytest.raises(AnnotationError) as err:
        dataset(root)
    assert str(err.value) == (f'{ann}: "annotations" is empty, no bone is labeled (an image '
                              'without labels belongs in the test split, without a JSON)')
    with pytest.warns(UserWarning, match=f'skipping: {ann}'):  # as every unusable file
        kept = dataset(root, skip_invalid=True)
    assert len(kept) == len(pngs(root / 'train/DCM')) - 1


@pytest.mark.parametrize('value, problem', [
    (['12', 5], "point 0 is ['12', 5]"),
    (['12.5', '5'], "point 0 is ['12.5', '5']"),
    ([True, 5], 'point 0 is [True, 5]'),
    ([12, None], 'point 0 is [12, None]'),
])
def test_a_string_coordinate_is_refused_naming_file_and_label(tmp_path, value, problem):
    """Before: "12" was converted to 12 silently, while a metadata size "64" was refused."""
    root = phantom(tmp_path)

    def edit(data: dict) -> None:
        data['annotations'][0]['points'][0] = value

    ann, data = _edit_first_json(root, edit)
    label = data['annotations'][0]['label']
    with pytest.raises(AnnotationError) as err:
        dataset(root)
    assert str(err.value) == (f'{ann}: {label} points are not a list of [x, y] numbers '
                              f'({problem})')


def test_a_string_metadata_size_is_refused_by_the_same_rule(tmp_path):
    root = phantom(tmp_path)
    ann, _ = _edit_first_json(root, lambda data: data.update(
        metadata={'height': '64', 'width': 64}))
    with pytest.raises(AnnotationError) as err:
        dataset(root)
    assert str(err.value) == (f"{ann}: metadata height and width must be integers, got '64' "
                              'and 64')
