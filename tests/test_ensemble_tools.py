"""tools/tune_thresholds.py and tools/ensemble.py on dumps made from a tiny labeled tree.

Model A is perfect (probability 1 on every bone) and model B misses every bone; both have
background noise below 0.26. Their equal-weight soft vote is exactly 0.5 on the bones, so
a bone pixel is predicted for thresholds below 0.5 only (``prob > t``).
"""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.evaluation import gt_masks, load_labels
from handbone_mmseg.functional import DICE_EPS
from handbone_mmseg.io import read_submission, save_probs, save_thresholds, write_index

from helpers import all_bones, load_tool, write_case

NAMES = ('image1661130828152.png', 'image1661130845790_R.png')
SIZE = 48


@pytest.fixture(scope='module')
def tree(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('ens')
    for name in NAMES:
        write_case(root / 'data', 'ID001', Path(name).stem, SIZE, all_bones(SIZE))
    labels = load_labels(root / 'data', 'train/DCM', 'train/outputs_json')
    gt = {name: torch.from_numpy(gt_masks(info)) for name, info in labels.items()}
    assert sorted(gt) == sorted(NAMES) and all(g.any((1, 2)).all() for g in gt.values())
    rng = torch.Generator().manual_seed(0)
    for model in ('A', 'B'):
        folder = root / model
        entries = []
        for name, g in gt.items():
            noise = torch.rand(g.shape, generator=rng) * 0.25
            bone = 1.0 if model == 'A' else 0.0
            entries.append((name, save_probs(folder, name, torch.where(g, bone, noise))))
        write_index(folder, CLASSES, 'uint8', 1.0, entries)
    # per class, Dice of an empty prediction averaged over the images
    miss = np.mean([(DICE_EPS / (g.sum((1, 2)).numpy() + DICE_EPS)) for g in gt.values()], 0)
    return dict(root=root, data=root / 'data', A=root / 'A', B=root / 'B', gt=gt, miss=miss)


@pytest.fixture(scope='module')
def tools():
    return load_tool('tune_thresholds'), load_tool('ensemble')


def _decoded(path: Path) -> dict[str, np.ndarray]:
    return dict(read_submission(path, shape=(SIZE, SIZE)))


def _dice_table(path: Path) -> tuple[list[str], dict[str, list[float]]]:
    lines = path.read_text().splitlines()
    rows = [line.split(',') for line in lines[1:]]
    return lines[0].split(','), {r[0]: [float(v) for v in r[1:]] for r in rows}


def test_tuned_thresholds_feed_the_ensemble(tree, tools, tmp_path, capsys):
    tune, ensemble = tools
    thr = tmp_path / 'thresholds.json'
    tune.main([str(tree['A']), str(tree['B']), '--data-root', str(tree['data']),
               '--out', str(thr)])
    assert f'wrote {thr} (tuned on 2 images' in capsys.readouterr().out
    saved = json.loads(thr.read_text())
    assert saved['thresholds'] == {c: 0.49 for c in CLASSES}   # top of the 0.26..0.49 plateau
    assert saved['dice_after'] == 1.0 and saved['images'] == 2
    assert saved['dice_before'] == pytest.approx(tree['miss'].mean(), abs=1e-6)  # 0.5 > 0.5

    out = tmp_path / 'sub.csv'
    ensemble.main([str(tree['A']), str(tree['B']), '--thresholds', str(thr), '--out', str(out),
                   '--data-root', str(tree['data'])])
    printed = capsys.readouterr().out
    assert f'wrote {out} (2 images x 29 classes, method soft)' in printed
    decoded = _decoded(out)
    assert sorted(decoded) == sorted(NAMES)
    for name in NAMES:
        assert np.array_equal(decoded[name], tree['gt'][name].numpy())

    header, table = _dice_table(tmp_path / 'sub_dice.csv')
    assert header == ['class', 'model 0', 'model 1', 'ensemble']
    assert list(table) == [*CLASSES, 'mean']
    for c, name in enumerate(CLASSES):
        assert table[name] == pytest.approx([1.0, tree['miss'][c], 1.0], abs=1e-6)
    assert table['mean'] == pytest.approx([1.0, tree['miss'].mean(), 1.0], abs=1e-6)
    assert f'wrote {tmp_path / "sub_dice.csv"}' in printed


@pytest.mark.parametrize('extra, bones', [
    ([], False),                                        # soft 0.5 is not above 0.5
    (['--weights', '3', '1'], True),                    # soft 0.75
    (['--weights', '1', '3'], False),                   # soft 0.25
    (['--method', 'hard'], True),                       # A alone holds half the weight
    (['--method', 'hard', '--vote-threshold', '1.0'], False),
    (['--method', 'hard', '--weights', '1', '2'], False),
])
def test_methods_and_weights(tree, tools, tmp_path, capsys, extra, bones):
    out = tmp_path / 'sub.csv'
    tools[1].main([str(tree['A']), str(tree['B']), '--out', str(out), *extra])
    for name, masks in _decoded(out).items():
        assert np.array_equal(masks, tree['gt'][name].numpy() if bones else np.zeros_like(masks))
    assert not (tmp_path / 'sub_dice.csv').exists()     # no --data-root, no Dice table


def _class_dice(path: Path, values) -> Path:
    rows = ''.join(f'{c},{v:.6f}\n' for c, v in zip(CLASSES, values))
    path.write_text(f'class,dice\n{rows}mean,{np.mean(values):.6f}\n')
    return path


def test_best_picks_each_class_from_the_better_model(tree, tools, tmp_path):
    a_wins = np.arange(len(CLASSES)) % 2 == 0
    csv_a = _class_dice(tmp_path / 'a.csv', np.where(a_wins, 0.9, 0.1))
    csv_b = _class_dice(tmp_path / 'b.csv', np.where(a_wins, 0.2, 0.8))
    out = tmp_path / 'best.csv'
    tools[1].main([str(tree['A']), str(tree['B']), '--method', 'best', '--choose-on',
                   str(csv_a), str(csv_b), '--out', str(out), '--data-root', str(tree['data'])])
    for name, masks in _decoded(out).items():
        assert np.array_equal(masks[a_wins], tree['gt'][name].numpy()[a_wins])
        assert not masks[~a_wins].any()
    _, table = _dice_table(tmp_path / 'best_dice.csv')
    ensemble = np.array([table[c][2] for c in CLASSES])
    np.testing.assert_allclose(ensemble, np.where(a_wins, 1.0, tree['miss']), atol=1e-6)


def _copy_dump(tree: dict, tmp_path: Path, name: str, **index_changes) -> Path:
    folder = tmp_path / name
    shutil.copytree(tree['A'], folder)
    if index_changes:
        index = json.loads((folder / 'index.json').read_text())
        index.update(index_changes)
        (folder / 'index.json').write_text(json.dumps(index))
    return folder


def _bad_thresholds(tree, tmp_path):
    path = tmp_path / 'thr.json'
    save_thresholds(path, [0.5] * len(CLASSES))
    saved = json.loads(path.read_text())
    saved['thresholds']['Lunate'] = 1.5
    path.write_text(json.dumps(saved))
    return ([str(tree['A']), str(tree['B']), '--thresholds', str(path)],
            [str(path), 'threshold of Lunate is 1.5', '(0, 1)'])


def _fewer_images(tree, tmp_path):
    folder = _copy_dump(tree, tmp_path, 'C')
    index = json.loads((folder / 'index.json').read_text())
    del index['images'][NAMES[1]]
    (folder / 'index.json').write_text(json.dumps(index))
    return ([str(tree['A']), str(folder)],
            [str(folder), str(tree['A']), 'hold different images', NAMES[1]])


def _other_classes(tree, tmp_path):
    folder = _copy_dump(tree, tmp_path, 'C', classes=[*CLASSES[:-2], 'Ulna', 'Radius'])
    return [str(tree['A']), str(folder)], [str(folder), 'classes']


def _missing_folder(tree, tmp_path):
    folder = tmp_path / 'no_such_dump'
    return [str(tree['A']), str(folder)], [str(folder / 'index.json'), 'no probability index']


def _corrupt_npz(tree, tmp_path):
    folder = _copy_dump(tree, tmp_path, 'C')
    npz = folder / (Path(NAMES[1]).stem + '.npz')   # the second image: the first is written
    npz.write_bytes(npz.read_bytes()[:100])
    return [str(tree['A']), str(folder)], [str(npz), 'not a readable probability file']


def _weights(*weights: str, message: str):
    return lambda tree, tmp_path: (
        [str(tree['A']), str(tree['B']), '--weights', *weights], [message])


@pytest.mark.parametrize('make_bad', [
    _weights('1', message='1 weights for 2 probability dumps'),
    _weights('1', '1', '1', message='3 weights for 2 probability dumps'),
    _weights('1', '0', message='weights must be positive'),
    _bad_thresholds, _fewer_images, _other_classes, _missing_folder, _corrupt_npz,
], ids=['fewer-weights', 'more-weights', 'zero-weight', 'threshold', 'images', 'classes',
        'missing', 'corrupt-npz'])
def test_bad_input_leaves_the_previous_csv(tree, tools, tmp_path, make_bad):
    outdir = tmp_path / 'out'
    outdir.mkdir()
    out = outdir / 'sub.csv'
    out.write_bytes(b'image_name,class,rle\nold,finger-1,1 2\n')
    before = out.read_bytes()
    argv, parts = make_bad(tree, tmp_path)
    with pytest.raises(SystemExit) as info:
        tools[1].main([*argv, '--out', str(out), '--data-root', str(tree['data'])])
    message = str(info.value.code)
    for part in parts:
        assert part in message
    assert f'{out} was not written' in message
    assert out.read_bytes() == before
    assert [p.name for p in outdir.iterdir()] == ['sub.csv']   # no temporary file, no table


@pytest.mark.parametrize('argv, message', [
    (['--method', 'best'], '--method best needs --choose-on with one dice_per_class.csv'),
    (['--choose-on', 'x.csv', 'y.csv'], '--choose-on applies to --method best only'),
])
def test_best_needs_choose_on(tree, tools, tmp_path, argv, message):
    out = tmp_path / 'sub.csv'
    with pytest.raises(SystemExit, match=re.escape(message)):
        tools[1].main([str(tree['A']), str(tree['B']), '--out', str(out), *argv])
    assert not out.exists()


def test_choose_on_table_with_wrong_classes(tree, tools, tmp_path):
    bad = tmp_path / 'bad.csv'
    bad.write_text('class,dice\n' + ''.join(f'{c},0.5\n' for c in CLASSES[:-1]))
    good = _class_dice(tmp_path / 'good.csv', [0.5] * len(CLASSES))
    with pytest.raises(SystemExit, match=re.escape(f'{bad}: lists classes')):
        tools[1].main([str(tree['A']), str(tree['B']), '--method', 'best', '--choose-on',
                       str(good), str(bad), '--out', str(tmp_path / 'sub.csv')])


@pytest.mark.parametrize('argv, parts', [
    (['{A}', '{B}', '--weights', '1'], ['1 weights for 2 probability dumps']),
    (['{A}', '{tmp}/none'], ['{tmp}/none/index.json', 'no probability index']),
    (['{A}', '{ghost}'], ['{ghost}', '1 images have no labels', 'ghost.png']),
    (['{A}', '--grid', '0.5', '0.2', '0.1'], ['--grid needs 0 < LOW <= HIGH < 1']),
])
def test_tune_thresholds_errors_write_nothing(tree, tools, tmp_path, argv, parts):
    ghost = tmp_path / 'ghost'
    entries = [(n, save_probs(ghost, n, torch.zeros(len(CLASSES), SIZE, SIZE)))
               for n in (*NAMES, 'ghost.png')]
    write_index(ghost, CLASSES, 'uint8', 1.0, entries)
    fill = dict(A=tree['A'], B=tree['B'], tmp=tmp_path, ghost=ghost)
    out = tmp_path / 'thr.json'
    argv = [a.format(**fill) for a in argv]
    if str(ghost) in argv:
        argv.remove(str(tree['A']))             # the ghost dump alone, else images differ
    with pytest.raises(SystemExit) as info:
        tools[0].main([*argv, '--data-root', str(tree['data']), '--out', str(out)])
    for part in parts:
        assert part.format(**fill) in str(info.value.code)
    assert not out.exists()
