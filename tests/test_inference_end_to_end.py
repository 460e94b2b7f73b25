"""Two tiny models trained briefly, TTA with probability dumps, tuning, ensembling, scoring."""
import json
from pathlib import Path

import pytest
import torch
from test_end_to_end import options

from handbone_mmseg.evaluation import check_submission, score_submission
from handbone_mmseg.io import ProbDump, read_submission
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT
from helpers import load_tool as tool

SIZE = 128


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> dict:
    """Phantom data, a small-TTA config, and two briefly trained models (seeds 0 and 1)."""
    root = tmp_path_factory.mktemp('ensemble')
    data = root / 'data'
    generate_phantom(data, patients=5, size=SIZE, seed=2, test_patients=1, test_labels=True)
    config = root / 'tiny_tta.py'
    # TTA resizes to 48 and 64: the ratios times options()' test_scale of 64
    config.write_text(f"_base_ = ['{ROOT / 'configs' / 'tiny_cpu_handbone.py'}']\n"
                      "tta_ratios = [0.75, 1.0]\n")
    checkpoints = []
    for seed in (0, 1):
        work = root / f'model{seed}'
        tool('train').main([str(config), '--work-dir', str(work), '--cfg-options', *options(
            data, **{'train_cfg.max_iters': 6, 'train_cfg.val_interval': 6,
                     'randomness.seed': seed})])
        checkpoints.append(work / 'iter_6.pth')
    return dict(root=root, data=data, config=config, checkpoints=checkpoints)


def predict(runs: dict, model: int, split: str, *extra: str) -> Path:
    out = runs['root'] / f'out{model}_{split}'
    tool('test').main([str(runs['config']), str(runs['checkpoints'][model]), '--tta',
                       '--split', split, '--out', str(out), '--save-probs',
                       '--work-dir', str(runs['root'] / f'model{model}'),
                       *extra, '--cfg-options', *options(runs['data'])])
    return out


def test_tta_dumps_tuning_ensemble_check_and_score(runs, capsys):
    data = runs['data']
    val = [predict(runs, m, 'val') for m in (0, 1)]
    test = [predict(runs, m, 'test', '--prob-scale', '0.5') for m in (0, 1)]

    dump = ProbDump(test[0] / 'probs')
    test_images = sorted(p.name for p in (data / 'test' / 'DCM').rglob('*.png'))
    assert dump.names == test_images and dump.dtype == 'uint8'
    assert dump.ori_shapes[test_images[0]] == (SIZE, SIZE)
    assert dump.images[test_images[0]]['shape'] == [SIZE // 2, SIZE // 2]

    # the saved probabilities are the TTA probabilities behind the submission
    val_dump = ProbDump(val[0] / 'probs')
    masks = dict(read_submission(val[0] / 'submission.csv', shape=(SIZE, SIZE)))
    for name in val_dump.names:
        prob = val_dump.load(name)
        agree = (prob > 0.5).numpy() == masks[name]
        # quantisation can only flip pixels within 1/510 of the threshold
        near = (prob - 0.5).abs().numpy() <= 1 / 510 + 1e-6
        assert (agree | near).all()

    thresholds = runs['root'] / 'thresholds.json'
    tool('tune_thresholds').main([str(v / 'probs') for v in val] + [
        '--data-root', str(data), '--out', str(thresholds)])
    tuned = json.loads(thresholds.read_text())
    assert len(tuned['thresholds']) == 29 and tuned['images'] == len(val_dump.names)
    assert tuned['dice_after'] >= tuned['dice_before']
    assert 'finger-1' in capsys.readouterr().out

    submission = runs['root'] / 'submission.csv'
    tool('ensemble').main([str(t / 'probs') for t in test] + [
        '--weights', '2', '1', '--thresholds', str(thresholds), '--out', str(submission),
        '--data-root', str(data), '--img-dir', 'test/DCM',
        '--ann-dir', 'test_labels/outputs_json'])
    assert check_submission(submission, data / 'test' / 'DCM', (SIZE, SIZE)) == []
    _, mean, n = score_submission(submission, data, 'test/DCM', 'test_labels/outputs_json')
    assert n == len(test_images)
    table = (runs['root'] / 'submission_dice.csv').read_text().splitlines()
    assert table[0] == 'class,model 0,model 1,ensemble' and len(table) == 31
    assert float(table[-1].split(',')[-1]) == pytest.approx(mean, abs=1e-6)


def test_thresholds_reach_the_test_tool(runs, tmp_path):
    path = tmp_path / 'thresholds.json'
    from handbone_mmseg.classes import CLASSES
    path.write_text(json.dumps({'thresholds': {c: 0.99 if c == 'Radius' else 0.5
                                               for c in CLASSES}}))
    test = tool('test')
    cfg = test.setup(test.parse_args([str(runs['config']), str(runs['checkpoints'][0]),
                                      '--thresholds', str(path), '--tta']))
    assert cfg.model.module.threshold[CLASSES.index('Radius')] == 0.99
    path.write_text(json.dumps({'thresholds': {c: 1.5 for c in CLASSES}}))
    with pytest.raises(SystemExit, match='thresholds.json: threshold of finger-1 is 1.5'):
        test.setup(test.parse_args([str(runs['config']), str(runs['checkpoints'][0]),
                                    '--thresholds', str(path)]))


def test_checkpoint_of_another_class_count_is_refused(runs, tmp_path):
    state = torch.load(runs['checkpoints'][0], map_location='cpu', weights_only=True)
    weight = state['state_dict']['decode_head.conv_seg.weight']
    state['state_dict']['decode_head.conv_seg.weight'] = weight[:19]
    path = tmp_path / 'cityscapes.pth'
    torch.save(state, path)
    with pytest.raises(SystemExit, match=r'cityscapes.pth: decode_head.conv_seg.weight has 19 '
                       r'output classes, this config predicts 29'):
        tool('test').main([str(runs['config']), str(path)])


def test_checkpoint_of_a_colour_model_tested_grey_is_refused(runs, tmp_path):
    # mmengine would load every other layer and keep a random 1-channel stem
    with pytest.raises(SystemExit, match=r'iter_6.pth: backbone\..* has shape \(\d+, 3, '
                       r'.*takes 3-channel input and the model 1: .*\(grayscale=False\)'):
        tool('test').main([str(runs['config']), str(runs['checkpoints'][0]), '--tta',
                           '--work-dir', str(tmp_path), '--cfg-options', *options(runs['data']),
                           'grayscale=True'])


def test_checkpoint_missing_weights_is_refused(runs, tmp_path):
    state = torch.load(runs['checkpoints'][0], map_location='cpu', weights_only=True)
    del state['state_dict']['decode_head.conv_seg.bias']
    path = tmp_path / 'other_head.pth'
    torch.save(state, path)
    with pytest.raises(SystemExit, match=r'other_head.pth: no decode_head.conv_seg.bias \(and '
                       r'0 more of the model\'s \d+ tensors\): a checkpoint of another model'):
        tool('test').main([str(runs['config']), str(path), '--work-dir', str(tmp_path),
                           '--cfg-options', *options(runs['data'])])


def test_save_probs_needs_out(runs):
    with pytest.raises(SystemExit, match='--save-probs needs --out'):
        tool('test').main([str(runs['config']), str(runs['checkpoints'][0]), '--save-probs'])


def test_show_dir_writes_one_picture_per_image(runs, tmp_path):
    import cv2
    show = tmp_path / 'show'
    tool('test').main([str(runs['config']), str(runs['checkpoints'][0]), '--split', 'val',
                       '--show-dir', str(show), '--work-dir', str(tmp_path / 'logs'),
                       '--cfg-options', *options(runs['data'])])
    val = sorted(n.stem for n in ProbDump(predict(runs, 0, 'val') / 'probs').folder.glob('*.npz'))
    pictures = sorted(p.stem for p in show.glob('*.png'))
    assert pictures == val
    height, width = cv2.imread(str(show / f'{pictures[0]}.png')).shape[:2]
    assert width >= 3 * SIZE and height >= SIZE  # prediction | ground truth | errors
