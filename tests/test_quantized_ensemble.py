"""The quantised, box-wise ensemble against the float path it replaced, byte for byte.

``reference_rles`` is the ensemble as ``tools/ensemble.py`` computed it before: every dump
dequantised to full-size float32, ``functional.voting`` on tensors, ``> thresholds``,
``apply_postprocess``, ``rle_encode`` of each full-frame mask. The dumps are phantom hands
(blurred bone masks plus noise, as a network's probabilities look) with ties planted on
purpose: level sums that equal a threshold exactly, where only float rounding decides.
"""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.evaluation import gt_masks, iter_ensemble, load_labels, search_thresholds
from handbone_mmseg.evaluation.ensemble import search_postprocess
from handbone_mmseg.functional import apply_postprocess, dequantize, rle_encode
from handbone_mmseg.functional.box_masks import BoxMasks, box_dice_counts, union_box
from handbone_mmseg.functional.labels import rasterize_polygons, unpack_labels
from handbone_mmseg.functional.metrics import dice_counts
from handbone_mmseg.functional.postprocess import PostprocessSearch, Rule
from handbone_mmseg.functional.quantized import integer_weights, level_cut
from handbone_mmseg.functional.thresholds import DEFAULT_GRID, ThresholdSearch
from handbone_mmseg.functional.voting import hard_vote, pick_per_class, soft_vote
from handbone_mmseg.io import ProbDump, write_index, write_submission
from handbone_mmseg.io.prob_dump import save_probs
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT, load_tool

SIZE = 160


def _model_probs(gt: np.ndarray, rng: np.random.Generator, blur: int) -> np.ndarray:
    """A network-like (C, H, W) map: each bone blurred, shifted a little, plus noise."""
    probs = np.zeros(gt.shape, np.float32)
    for c, mask in enumerate(gt):
        m = np.roll(mask.astype(np.float32), tuple(rng.integers(-2, 3, 2)), (0, 1))
        probs[c] = cv2.blur(m, (blur, blur))
    noise = rng.random(gt.shape, dtype=np.float32) * 0.3
    return np.clip(probs * 0.9 + noise * (probs > 0.02), 0, 1)


@pytest.fixture(scope='module')
def phantom(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('qens')
    generate_phantom(root / 'data', patients=2, size=SIZE, seed=3, test_patients=0)
    labels = load_labels(root / 'data', 'train/DCM', 'train/outputs_json')
    rng = np.random.default_rng(0)
    levels = {}
    for model, (blur, dtype) in enumerate(((5, 'uint8'), (9, 'uint8'), (7, 'uint16'))):
        folder = root / f'm{model}'
        entries = []
        for name, info in sorted(labels.items()):
            probs = _model_probs(gt_masks(info), rng, blur)
            entries.append((name, save_probs(folder, name, torch.from_numpy(probs), dtype)))
        write_index(folder, CLASSES, dtype, 1.0, entries)
        levels[model] = {n: ProbDump(folder).crops(n).dense() for n in labels}
    # ties: the levels of model 1 complete model 0's to exactly 255 (0.5 for equal weights)
    # or to 102 (0.2) on a band of every bone
    name = sorted(labels)[0]
    # the last image: model 0 sees only the upper half of each bone, so the ground truth
    # reaches outside the boxes of the probabilities
    last = sorted(labels)[-1]
    cut = levels[0][last].copy()
    for c in range(len(CLASSES)):
        rows = np.flatnonzero(cut[c].any(1))
        if rows.size:
            cut[c, (rows[0] + rows[-1]) // 2:] = 0
    entry = save_probs(root / 'm0', last, torch.from_numpy(dequantize(cut)), 'uint8')
    assert entry['file'] == ProbDump(root / 'm0').images[last]['file']
    dump0, dump1 = ProbDump(root / 'm0'), ProbDump(root / 'm1')
    l0, l1 = levels[0][name].copy(), levels[1][name].copy()
    band = (l0 > 60) & (l0 < 200)
    l1[band] = np.where(np.arange(band.sum()) % 2, 255 - l0[band], 102 - np.minimum(l0[band], 102))
    for dump, lv in ((dump0, l0), (dump1, l1)):
        entry = save_probs(dump.folder, name, torch.from_numpy(dequantize(lv)), 'uint8')
        assert entry['file'] == dump.images[name]['file']
    return dict(root=root, labels=labels, dumps=[root / f'm{m}' for m in range(3)])


def reference_masks(folders, weights=None, thresholds=None, method='soft', vote_threshold=0.5,
                    choice=None, rules=None):
    """The float path, as it was: ``{name: (C, H, W) bool}``."""
    dumps = [ProbDump(f) for f in folders]
    weights = weights or [1.0] * len(dumps)
    thr = torch.tensor(thresholds or [0.5] * len(CLASSES), dtype=torch.float32).view(-1, 1, 1)
    out = {}
    for name in dumps[0].names:
        probs = [d.load(name) for d in dumps]
        if method == 'soft':
            masks = soft_vote(probs, weights) > thr
        elif method == 'hard':
            masks = hard_vote([p > thr for p in probs], weights, vote_threshold)
        else:
            masks = pick_per_class(probs, choice) > thr
        masks = masks.numpy()
        if rules is not None:
            masks = apply_postprocess(masks, rules)
        out[name] = masks
    return out


CASES = [
    dict(),
    dict(weights=[0.6, 0.4]),
    dict(thresholds=[0.2 + 0.02 * (c % 10) for c in range(len(CLASSES))]),
    dict(method='hard'),
    dict(method='hard', weights=[2, 1], vote_threshold=1.0),
    dict(method='best', choice=[c % 2 for c in range(len(CLASSES))]),
    dict(rules=[Rule(largest=True) if c % 3 == 0 else Rule(min_size=5) if c % 3 == 1 else None
                for c in range(len(CLASSES))]),
]


@pytest.mark.parametrize('case', CASES)
def test_two_uint8_dumps_give_the_float_paths_masks(phantom, case):
    folders = phantom['dumps'][:2]
    expected = reference_masks(folders, **case)
    args = dict(case)
    rules = args.pop('rules', None)
    got = {name: masks for name, masks, _ in
           iter_ensemble([ProbDump(f) for f in folders], postprocess=rules, **args)}
    assert sorted(got) == sorted(expected)
    for name, masks in got.items():
        assert np.array_equal(masks.dense(), expected[name]), name
        assert masks.rles() == [rle_encode(m) for m in expected[name]]


def test_the_planted_ties_are_decided_as_the_float_path_decides(phantom):
    """The band planted in the fixture makes sums equal to 255 and 102 exactly."""
    dumps = [ProbDump(f) for f in phantom['dumps'][:2]]
    name = dumps[0].names[0]
    total = dumps[0].crops(name).dense().astype(int) + dumps[1].crops(name).dense()
    assert (total == 255).sum() > 500 and (total == 102).sum() > 300
    lo, hi = level_cut(0.5, 255, 2)
    assert (lo, hi) == (255, 255)                   # the tie is the one ambiguous sum
    for thresholds in ([0.5] * len(CLASSES), [0.2] * len(CLASSES)):
        expected = reference_masks(phantom['dumps'][:2], thresholds=thresholds)[name]
        (_, masks, _), = [r for r in iter_ensemble(dumps, thresholds=thresholds) if r[0] == name]
        assert np.array_equal(masks.dense(), expected)


def test_three_dumps_mixing_uint8_and_uint16(phantom):
    folders = phantom['dumps']
    for case in (dict(weights=[1, 2, 3]), dict(method='hard', weights=[0.5, 0.3, 0.2])):
        expected = reference_masks(folders, **case)
        for name, masks, _ in iter_ensemble([ProbDump(f) for f in folders], **case):
            assert np.array_equal(masks.dense(), expected[name]), (case, name)


def test_weights_without_a_small_integer_ratio_vote_in_float(phantom):
    weights = [1 / 3, 2 ** 0.5]
    assert integer_weights(weights) is None
    expected = reference_masks(phantom['dumps'][:2], weights=weights)
    for name, masks, _ in iter_ensemble([ProbDump(f) for f in phantom['dumps'][:2]], weights):
        assert np.array_equal(masks.dense(), expected[name])


def test_csv_is_byte_identical_to_the_float_path_and_to_the_pool(phantom, tmp_path):
    ensemble = load_tool('ensemble')
    folders = [str(f) for f in phantom['dumps'][:2]]
    for method in ('soft', 'hard'):
        expected = reference_masks(folders, method=method)
        reference = tmp_path / f'reference_{method}.csv'
        write_submission(reference, ((n, [rle_encode(m) for m in masks])
                                     for n, masks in sorted(expected.items())))
        for workers in ('0', '2'):
            out = tmp_path / f'{method}_{workers}.csv'
            ensemble.main([*folders, '--out', str(out), '--method', method,
                           '--workers', workers])
            assert out.read_bytes() == reference.read_bytes(), (method, workers)


def test_dice_counts_per_model_and_ensemble_match_the_dense_counts(phantom):
    folders = phantom['dumps'][:2]
    labels = phantom['labels']
    expected = reference_masks(folders)
    for name, _, counts in iter_ensemble([ProbDump(f) for f in folders], labels=labels):
        gt = gt_masks(labels[name])
        assert np.array_equal(counts[-1], dice_counts(expected[name], gt))
        alone = reference_masks(folders[:1])[name]
        assert np.array_equal(counts[0], dice_counts(alone, gt))


def test_threshold_search_matches_the_float_search(phantom):
    folders = phantom['dumps'][:2]
    labels = phantom['labels']
    dumps = [ProbDump(f) for f in folders]
    for weights in (None, [0.7, 0.3]):
        old = ThresholdSearch(DEFAULT_GRID)
        for name in dumps[0].names:
            old.add(soft_vote([d.load(name) for d in dumps], weights or [1, 1]),
                    torch.from_numpy(gt_masks(labels[name])))
        new = search_thresholds(dumps, labels, weights)
        assert new.count == old.count == len(labels)
        assert np.array_equal(new.dice(), old.dice())
        alone = ThresholdSearch(DEFAULT_GRID)        # the half-bone model alone
        for name in dumps[0].names:
            alone.add(dumps[0].load(name), torch.from_numpy(gt_masks(labels[name])))
        assert np.array_equal(search_thresholds(dumps[:1], labels).dice(), alone.dice())
    pooled = search_thresholds(dumps, labels, workers=2)
    assert np.array_equal(pooled.dice(), new.dice() if weights is None else
                          search_thresholds(dumps, labels).dice())


def test_postprocess_search_on_boxes_matches_dense(phantom):
    folders = phantom['dumps'][:2]
    labels = phantom['labels']
    thresholds = [0.4] * len(CLASSES)
    expected = reference_masks(folders, thresholds=thresholds)
    dense = PostprocessSearch(len(CLASSES))
    for name in sorted(expected):
        dense.add(expected[name], gt_masks(labels[name]))
    boxes = search_postprocess([ProbDump(f) for f in folders], labels, thresholds)
    assert [np.array_equal(a, b) for a, b in zip(boxes.gt_areas, dense.gt_areas)] == \
        [True] * len(labels)
    for c in range(len(CLASSES)):
        assert all(np.array_equal(a, b) for a, b in zip(boxes.components[c], dense.components[c]))


def test_a_dump_votes_only_on_the_classes_it_covers(tmp_path):
    """A second-stage dump covering Lunate: on Lunate the two vote, elsewhere only A."""
    shape = (len(CLASSES), 8, 8)
    a = np.full(shape, 0.4, np.float32)
    b = np.full(shape, 0.9, np.float32)
    for name, probs, covers in (('A', a, None), ('B', b, ['Lunate'])):
        write_index(tmp_path / name, CLASSES, 'uint8', 1.0,
                    [('x.png', save_probs(tmp_path / name, 'x.png', torch.from_numpy(probs)))],
                    covers=covers)
    (_, masks, _), = iter_ensemble([ProbDump(tmp_path / 'A'), ProbDump(tmp_path / 'B')])
    lunate = CLASSES.index('Lunate')
    dense = masks.dense()
    assert dense[lunate].all()                      # (0.4 + 0.9) / 2 > 0.5
    assert not dense[np.arange(len(CLASSES)) != lunate].any()   # 0.4 alone
    with pytest.raises(ValueError, match='does not cover'):
        list(iter_ensemble([ProbDump(tmp_path / 'A'), ProbDump(tmp_path / 'B')],
                           method='best', choice=[1] * len(CLASSES)))


def test_integer_weights_and_level_cuts():
    assert integer_weights([1, 1]) == [1, 1]
    assert integer_weights([0.6, 0.4]) == [3, 2]
    assert integer_weights([1, 0.5, 0.25]) == [4, 2, 1]
    assert level_cut(0.5, 255, 2) == (255, 255)     # sum 255 of 510 is exactly 0.5
    assert level_cut(0.37, 255, 1) == (95, 94)      # 0.37 * 255 = 94.35: no tie, > 94
    lo, hi = level_cut(0.2, 65535, 1)
    assert (lo, hi) == (13106, 13107) or lo == hi == 13107   # 13107 = 0.2 * 65535


def test_box_masks_round_trips():
    rng = np.random.default_rng(1)
    dense = np.zeros((3, 20, 30), bool)
    dense[0, 3:9, 4:30] = rng.random((6, 26)) > 0.3        # touches the right edge
    dense[1, 0:20, 0:30] = rng.random((20, 30)) > 0.5      # full width: runs wrap rows
    boxes = [(3, 9, 4, 30), (0, 20, 0, 30), (0, 0, 0, 0)]
    masks = BoxMasks((20, 30), boxes, [dense[0, 3:9, 4:30], dense[1], np.zeros((0, 0), bool)])
    assert np.array_equal(masks.dense(), dense)
    assert masks.rles() == [rle_encode(m) for m in dense]
    assert union_box(boxes) == (0, 20, 0, 30) and union_box([(0, 0, 0, 0)]) == (0, 0, 0, 0)
    gt = BoxMasks.from_dense(np.roll(dense, 2, axis=2))
    assert np.array_equal(box_dice_counts(masks, gt), dice_counts(dense, gt.dense()))


def test_ground_truth_boxes_equal_the_unpacked_label_map():
    polygons = [(0, np.array([[2, 2], [12, 3], [8, 14]], float)),
                (0, np.array([[20, 20], [25, 20], [25, 28]], float)),   # a second piece
                (2, np.array([[-5, -5], [6, -5], [6, 6], [-5, 6]], float))]  # clipped
    masks = BoxMasks.from_polygons(polygons, (30, 32), 3)
    label = torch.from_numpy(rasterize_polygons(polygons, (30, 32)))
    assert np.array_equal(masks.dense(), unpack_labels(label, 3)[0].numpy())
    assert masks.boxes[1] == (0, 0, 0, 0) and masks.boxes[2] == (0, 7, 0, 7)


LIGHT_TOOLS = ['check_submission', 'ensemble', 'tune_thresholds', 'visualize', 'make_phantom',
               'convert_coco', 'browse']
HEAVY = ('torch', 'mmseg', 'mmengine', 'mmcv')


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _heavy_modules_after(tool: str, argv: list[str]) -> str:
    """Run ``tools/TOOL.py ARGV`` in a fresh interpreter; the heavy modules it imported."""
    result = _python('import runpy, sys\n'
                     f'sys.argv = {[tool, *argv]!r}\n'
                     'try:\n'
                     f'    runpy.run_path("tools/{tool}.py", run_name="__main__")\n'
                     'except SystemExit as e:\n'
                     '    assert not e.code, e.code\n'
                     f'print("HEAVY", [m for m in {HEAVY!r} if m in sys.modules], '
                     'file=sys.stderr)\n')
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


@pytest.mark.parametrize('tool', LIGHT_TOOLS)
def test_tools_after_training_start_without_torch_or_mmseg(tool):
    assert 'HEAVY []' in _heavy_modules_after(tool, ['--help'])


def test_ensembling_and_tuning_run_without_torch_or_mmseg(phantom, tmp_path):
    """Not only the start: the whole work of both tools on full-size dumps."""
    dumps = [str(f) for f in phantom['dumps'][:2]]
    data = str(phantom['root'] / 'data')
    thresholds = str(tmp_path / 'thresholds.json')
    assert 'HEAVY []' in _heavy_modules_after(
        'tune_thresholds', [*dumps, '--data-root', data, '--out', thresholds])
    assert 'HEAVY []' in _heavy_modules_after(
        'ensemble', [*dumps, '--out', str(tmp_path / 's.csv'), '--thresholds', thresholds,
                     '--data-root', data, '--workers', '0'])
    assert 'HEAVY []' in _heavy_modules_after(
        'check_submission', [str(tmp_path / 's.csv'), '--test-dir', data + '/train/DCM',
                             '--size', str(SIZE), str(SIZE)])


def test_the_register_module_registers_the_plugin():
    result = _python('import sys, handbone_mmseg\n'
                     'assert "mmseg" not in sys.modules and "torch" not in sys.modules\n'
                     'import handbone_mmseg.register\n'
                     'from mmseg.registry import DATASETS, METRICS, MODELS, TRANSFORMS\n'
                     'print(MODELS.get("MultiLabelEncoderDecoder"), '
                     'DATASETS.get("HandBoneDataset"),\n'
                     '      METRICS.get("MultiLabelDiceMetric"), '
                     'TRANSFORMS.get("LoadXrayFromFile"))\n')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'None' not in result.stdout and result.stdout.count('class') == 4


def test_lazy_members_of_the_package():
    import handbone_mmseg
    from handbone_mmseg.io import ProbDump as direct
    assert handbone_mmseg.io.ProbDump is direct is ProbDump
    with pytest.raises(AttributeError, match='no attribute'):
        handbone_mmseg.io.NotAThing  # noqa: B018
    assert 'ProbDump' in dir(handbone_mmseg.io)
    assert Path(handbone_mmseg.__file__).parent == ROOT / 'handbone_mmseg'


def test_default_workers_follow_the_usable_cores(monkeypatch):
    from handbone_mmseg.evaluation import ensemble
    for cores, images, expected in (({0}, 300, 0), ({0, 1}, 8, 2), ({0, 1}, 7, 0),
                                    (set(range(64)), 300, 4), (set(range(64)), 15, 0)):
        monkeypatch.setattr(ensemble.os, 'sched_getaffinity', lambda _, c=cores: c,
                            raising=False)
        assert ensemble.default_workers(images) == expected, (cores, images)
