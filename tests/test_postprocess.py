"""Connected-component post-processing: hand-made masks, the choice on validation Dice, its
JSON section, and the tools and metric that apply it."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmseg.registry import METRICS

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.evaluation import MultiLabelDiceMetric, gt_masks, load_labels
from handbone_mmseg.functional import (
    DICE_EPS,
    PostprocessSearch,
    Rule,
    apply_postprocess,
    dice_counts,
    dice_from_counts,
    keep_largest_component,
    pack_masks,
    remove_small_components,
)
from handbone_mmseg.functional.postprocess import (
    MIN_GAIN,
    candidate_rules,
    check_rule,
    filter_components,
)
from handbone_mmseg.io import (
    load_postprocess,
    load_thresholds,
    read_submission,
    save_probs,
    save_thresholds,
    write_index,
)

from helpers import all_bones, load_tool, write_case

EPS = DICE_EPS


def _mask(text: str) -> np.ndarray:
    """A bool mask drawn with '#' for foreground, one row per line."""
    return np.array([[ch == '#' for ch in row] for row in text.split()], bool)


TWO_BLOBS = _mask('''
    ........
    .###....
    .##.....
    ........
    .....###
''')   # 5 pixels top left, 3 bottom right
BIG_ONLY = _mask('''
    ........
    .###....
    .##.....
    ........
    ........
''')


def test_largest_component_and_small_components():
    assert np.array_equal(keep_largest_component(TWO_BLOBS), BIG_ONLY)
    assert np.array_equal(remove_small_components(TWO_BLOBS, 4), BIG_ONLY)
    assert np.array_equal(remove_small_components(TWO_BLOBS, 3), TWO_BLOBS)  # 3 is not under 3
    assert np.array_equal(remove_small_components(TWO_BLOBS, 0), TWO_BLOBS)
    assert not remove_small_components(TWO_BLOBS, 6).any()
    # both: the largest, and only if it is big enough
    assert np.array_equal(filter_components(TWO_BLOBS, Rule(True, 5)), BIG_ONLY)
    assert not filter_components(TWO_BLOBS, Rule(True, 6)).any()
    assert TWO_BLOBS.sum() == 8                                   # the input is not changed


def test_components_are_8_connected():
    mask = _mask('''
        #.....
        .#....
        ..#...
        ......
        ....##
    ''')   # a diagonal of 3 (one component only with corners) and a bar of 2
    assert np.array_equal(keep_largest_component(mask), _mask('''
        #.....
        .#....
        ..#...
        ......
        ......
    '''))
    assert np.array_equal(remove_small_components(mask, 3), keep_largest_component(mask))


def test_tie_keeps_the_first_in_raster_order():
    mask = _mask('''
        ....##
        ......
        ##....
    ''')
    assert np.array_equal(keep_largest_component(mask), _mask('''
        ....##
        ......
        ......
    '''))


@pytest.mark.parametrize('rule', [Rule(largest=True), Rule(min_size=3), Rule(True, 3)])
def test_empty_mask_stays_empty(rule):
    out = filter_components(np.zeros((4, 5), bool), rule)
    assert out.shape == (4, 5) and out.dtype == bool and not out.any()


def test_full_frame_and_non_bool_masks():
    full = np.ones((3, 4), np.uint8)
    assert keep_largest_component(full).all()
    assert np.array_equal(remove_small_components(TWO_BLOBS.astype(np.int32) * 7, 4), BIG_ONLY)
    with pytest.raises(ValueError, match='min_size must be non-negative, got -1'):
        remove_small_components(TWO_BLOBS, -1)
    with pytest.raises(ValueError, match='expected a 2-D mask'):
        keep_largest_component(np.zeros((2, 3, 3), bool))


def test_apply_touches_only_classes_with_rules():
    masks = np.stack([TWO_BLOBS, TWO_BLOBS, TWO_BLOBS, np.zeros_like(TWO_BLOBS)])
    original = masks.copy()
    out = apply_postprocess(masks, [Rule(largest=True), None, Rule(min_size=6), Rule(True)])
    assert np.array_equal(out[0], BIG_ONLY)
    assert np.array_equal(out[1], TWO_BLOBS)
    assert not out[2].any() and not out[3].any()
    assert np.array_equal(masks, original)
    with pytest.raises(ValueError, match=r'3 post-processing rules for masks of shape'):
        apply_postprocess(masks, [None] * 3)


@pytest.mark.parametrize('rule, expected', [
    (None, None), ({}, None), ({'largest': False, 'min_size': 0}, None),
    ({'largest': True}, Rule(True, 0)), ({'min_size': 40}, Rule(False, 40)),
    ({'largest': True, 'min_size': 7}, Rule(True, 7)), (Rule(True, 2), Rule(True, 2)),
])
def test_check_rule_normalises(rule, expected):
    assert check_rule(rule) == expected


def _components_brute_force(masks, gt, rule):
    processed = apply_postprocess(masks, [rule] * len(masks))
    return dice_from_counts(dice_counts(torch.from_numpy(processed), torch.from_numpy(gt)))


def test_search_dice_matches_applying_the_rule():
    rng = np.random.default_rng(0)
    images = [(rng.random((3, 12, 15)) < 0.3, rng.random((3, 12, 15)) < 0.3)
              for _ in range(4)]
    images.append((np.zeros((3, 12, 15), bool), np.zeros((3, 12, 15), bool)))
    search = PostprocessSearch(num_classes=3)
    for masks, gt in images:
        search.add(masks, gt)
    assert search.count == 5
    for rule in [None, Rule(True), Rule(min_size=2), Rule(min_size=5), Rule(True, 4)]:
        expected = np.mean([_components_brute_force(m, g, rule) for m, g in images], axis=0)
        got = [search.dice(c, rule) for c in range(3)]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_candidates_scale_with_the_median_area():
    # 1% of 49 rounds to 0: removing components under 0 or 1 pixels changes nothing
    assert candidate_rules(49) == [Rule(min_size=2), Rule(min_size=5), Rule(min_size=12),
                                   Rule(largest=True), Rule(True, 2), Rule(True, 5),
                                   Rule(True, 12)]
    assert candidate_rules(0) == [Rule(largest=True)]          # a class never present


def _chooser_images() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two 12x12 images of 4 classes.

    A: a 3x3 bone predicted exactly, plus a 2-pixel stray blob: the largest component helps.
    B: a bone in two pieces (3x3 and 2x2), predicted exactly: any rule that removes a piece
       hurts, one that removes nothing does not raise Dice.
    C: a 4x5 bone and a genuine 2x2 piece, plus a 1-pixel speck: removing components under
       2 pixels (a tenth of the median area 24) gives Dice 1; the largest alone loses the piece.
    D: never present, never predicted.
    """
    images = []
    for shift in (0, 1):
        gt = np.zeros((4, 12, 12), bool)
        gt[0, 1 + shift:4 + shift, 1:4] = True
        gt[1, 1:4, 1 + shift:4 + shift] = True
        gt[1, 8:10, 8:10] = True
        gt[2, 2:6, 2 + shift:7 + shift] = True
        gt[2, 9:11, 1:3] = True
        pred = gt.copy()
        pred[0, 9, 9:11] = True
        pred[2, 10, 10] = True
        images.append((pred, gt))
    return images


def test_chooser_keeps_a_rule_only_where_it_raises_dice():
    search = PostprocessSearch(num_classes=4)
    for pred, gt in _chooser_images():
        search.add(pred, gt)
    assert search.median_areas().tolist() == [9, 13, 24, 0]
    rules, before, after = search.choose()
    # A: the only size tried is 2 (a quarter of 9), and the stray blob is not under 2; the
    # largest component is the first candidate that gives Dice 1
    assert rules == [Rule(largest=True), None, Rule(min_size=2), None]
    assert before[0] == pytest.approx((18 + EPS) / (11 + 9 + EPS))
    assert before[1] == 1.0 and before[3] == 1.0
    assert before[2] == pytest.approx((48 + EPS) / (25 + 24 + EPS))
    assert after.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert search.dice(1, Rule(largest=True)) < 1.0            # it would hurt B
    assert search.dice(2, Rule(largest=True)) < 1.0            # and lose C's piece


def test_chooser_ignores_gains_under_the_tolerance():
    gt = np.zeros((1, 120, 120), bool)
    gt[0, 5:105, 5:105] = True                                 # 10,000 pixels
    pred = gt.copy()
    pred[0, 115, 115] = True                                   # one stray pixel
    search = PostprocessSearch(num_classes=1)
    search.add(pred, gt)
    gain = 1 - (20000 + EPS) / (20001 + EPS)
    assert 0 < gain < MIN_GAIN
    rules, before, after = search.choose()
    assert rules == [None] and after[0] == before[0]
    assert search.choose(min_gain=0)[0] == [Rule(min_size=100)]   # 1% of 10,000


def test_search_usage_errors():
    search = PostprocessSearch(num_classes=2)
    with pytest.raises(ValueError, match='no images were added'):
        search.dice(0, None)
    with pytest.raises(ValueError, match=r'must both be \(2, H, W\)'):
        search.add(np.zeros((3, 2, 2), bool), np.zeros((3, 2, 2), bool))


# --- the JSON section ---

def test_postprocess_section_round_trip(tmp_path):
    rules = [None] * len(CLASSES)
    rules[CLASSES.index('Pisiform')] = Rule(largest=True)
    rules[CLASSES.index('Ulna')] = Rule(min_size=120)
    path = tmp_path / 'thr.json'
    save_thresholds(path, [0.4] * len(CLASSES), postprocess=rules, dice_after=0.9)
    saved = json.loads(path.read_text())
    assert saved['postprocess'] == {'Pisiform': {'largest': True, 'min_size': 0},
                                    'Ulna': {'largest': False, 'min_size': 120}}
    assert load_postprocess(path) == rules
    assert load_thresholds(path).tolist() == [0.4] * len(CLASSES)
    save_thresholds(path, [0.4] * len(CLASSES), postprocess=[None] * len(CLASSES))
    assert json.loads(path.read_text())['postprocess'] == {}


def test_file_without_the_section_loads(tmp_path):
    path = tmp_path / 'old.json'
    path.write_text(json.dumps({'thresholds': {c: 0.5 for c in CLASSES}}))
    assert load_postprocess(path) == [None] * len(CLASSES)
    assert load_thresholds(path).tolist() == [0.5] * len(CLASSES)
    # null entries and rules that change nothing mean no post-processing
    path.write_text(json.dumps({'thresholds': {c: 0.5 for c in CLASSES}, 'postprocess': {
        'Ulna': None, 'Radius': {'largest': False, 'min_size': 0}}}))
    assert load_postprocess(path) == [None] * len(CLASSES)


@pytest.mark.parametrize('section, message', [
    ({'Ulnar': {'largest': True}}, "postprocess: unknown classes ['Ulnar']"),
    ({'Ulna': {'min_size': -3}}, 'postprocess.Ulna.min_size: must be a non-negative integer, '
                                 'got -3'),
    ({'Ulna': {'min_size': 2.5}}, 'postprocess.Ulna.min_size: must be a non-negative'),
    ({'Ulna': {'min_size': '10'}}, 'postprocess.Ulna.min_size: must be a non-negative'),
    ({'Ulna': {'min_size': True}}, 'postprocess.Ulna.min_size: must be a non-negative'),
    ({'Ulna': {'largest': 'yes'}}, "postprocess.Ulna.largest: must be true or false, got 'yes'"),
    ({'Ulna': {'largest': 1}}, 'postprocess.Ulna.largest: must be true or false, got 1'),
    ({'Ulna': {'max_size': 3}}, "postprocess.Ulna: unknown keys ['max_size']"),
    ({'Ulna': 5}, 'postprocess.Ulna: expected {"largest": bool, "min_size": int} or null'),
    ([{'largest': True}], 'postprocess: must map class names to rules'),
])
def test_bad_section_is_one_line_naming_file_and_key(tmp_path, section, message):
    path = tmp_path / 'thr.json'
    path.write_text(json.dumps({'thresholds': {c: 0.5 for c in CLASSES},
                                'postprocess': section}))
    with pytest.raises(ValueError) as info:
        load_postprocess(path)
    text = str(info.value)
    assert text.startswith(f'{path}: postprocess') and message in text and '\n' not in text


def test_section_for_other_classes(tmp_path):
    path = tmp_path / 'cityscapes.json'
    path.write_text(json.dumps({'postprocess': {'road': {'largest': True},
                                                'car': {'min_size': 10}}}))
    with pytest.raises(ValueError, match=rf"^{path}: postprocess: unknown classes \['road', "
                       r"'car'\] \(this model has 29 classes: finger-1, "):
        load_postprocess(path)
    path.write_text('[1, 2]')
    with pytest.raises(ValueError, match=rf'^{path}: not a thresholds file'):
        load_postprocess(path)


def test_save_refuses_bad_rules(tmp_path):
    path = tmp_path / 't.json'
    with pytest.raises(ValueError, match=r't.json: postprocess.a.min_size: must be a non'):
        save_thresholds(path, [0.5, 0.5], ('a', 'b'), postprocess=[{'min_size': -1}, None])
    with pytest.raises(ValueError, match='1 rules for 2 classes'):
        save_thresholds(path, [0.5, 0.5], ('a', 'b'), postprocess=[None])
    assert not path.exists()


# --- the metric behind tools/test.py ---

def _sample(name: str, pred: np.ndarray, gt: np.ndarray) -> dict:
    return dict(img_path=f'/data/val/DCM/ID001/{name}',
                pred_sem_seg=dict(data=torch.from_numpy(pred)),
                gt_sem_seg=dict(data=torch.from_numpy(pack_masks(gt))[None].long()))


def test_metric_post_processes_before_dice_and_csv(tmp_path):
    # both classes: the bone (5 pixels) predicted exactly plus a stray 3-pixel blob
    gt = np.stack([BIG_ONLY, BIG_ONLY])
    pred = np.stack([TWO_BLOBS, TWO_BLOBS])
    with_stray = (10 + EPS) / (8 + 5 + EPS)
    for rules, dice_a in [(None, with_stray), ({'a': {'largest': True}}, 1.0)]:
        out = tmp_path / str(bool(rules))
        metric = MultiLabelDiceMetric(output_dir=str(out), postprocess=rules)
        metric.dataset_meta = dict(classes=('a', 'b'))
        metric.process({}, [_sample('i1.png', pred, gt)])
        result = metric.compute_metrics(metric.results)
        assert result['mDice'] == pytest.approx((dice_a + with_stray) / 2)
        rows = (out / 'dice_per_class.csv').read_text().splitlines()
        assert rows[1] == f'a,{dice_a:.6f}' and rows[2] == f'b,{with_stray:.6f}'
        decoded = dict(read_submission(out / 'submission.csv', BIG_ONLY.shape, ('a', 'b')))
        assert np.array_equal(decoded['i1.png'][0], BIG_ONLY if rules else TWO_BLOBS)
        assert np.array_equal(decoded['i1.png'][1], TWO_BLOBS)


def test_metric_refuses_rules_for_unknown_classes():
    metric = MultiLabelDiceMetric(postprocess={'Ulnar': {'largest': True}})
    with pytest.raises(ValueError, match=r"test_evaluator.postprocess: unknown classes \['Uln"):
        metric.dataset_meta = dict(classes=CLASSES)


def test_test_tool_passes_the_rules_to_the_metric(tmp_path):
    test = load_tool('test')
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': {'decode_head.conv_seg.weight': torch.zeros(29, 4, 1, 1)}},
               checkpoint)
    config = str(Path(__file__).resolve().parents[1] / 'configs' / 'tiny_cpu_handbone.py')
    rules = [None] * len(CLASSES)
    rules[0] = Rule(largest=True)
    path = tmp_path / 'thr.json'
    save_thresholds(path, [0.5] * len(CLASSES), postprocess=rules)
    for extra in ([], ['--tta'], ['--split', 'val', '--tta']):
        cfg = test.setup(test.parse_args([config, str(checkpoint), '--thresholds', str(path),
                                          *extra]))
        assert cfg.test_evaluator['postprocess'] == {'finger-1': {'largest': True,
                                                                  'min_size': 0}}
    # the metric built from that config removes finger-1's stray blob before counting
    metric = METRICS.build(cfg.test_evaluator)
    metric.dataset_meta = dict(classes=CLASSES)
    pred = np.zeros((len(CLASSES), *TWO_BLOBS.shape), bool)
    gt = pred.copy()
    pred[0], gt[0] = TWO_BLOBS, BIG_ONLY
    metric.process({}, [_sample('i.png', pred, gt)])
    assert metric.results[0]['counts'][0].tolist() == [5, 5, 5]
    save_thresholds(path, [0.5] * len(CLASSES))
    cfg = test.setup(test.parse_args([config, str(checkpoint), '--thresholds', str(path)]))
    assert 'postprocess' not in cfg.test_evaluator


# --- tools/tune_thresholds.py and tools/ensemble.py ---

SIZE = 48
NAMES = ('image1661130828152.png', 'image1661130845790_R.png')


@pytest.fixture(scope='module')
def tree(tmp_path_factory) -> dict:
    """A dump that predicts every bone exactly (7x7 = 49 pixels), plus a stray 2x2 blob for
    finger-1 and a stray pixel for finger-2, in the empty rows below the bones."""
    root = tmp_path_factory.mktemp('pp')
    for name in NAMES:
        write_case(root / 'data', 'ID001', Path(name).stem, SIZE, all_bones(SIZE))
    labels = load_labels(root / 'data', 'train/DCM', 'train/outputs_json')
    gt = {name: gt_masks(info) for name, info in labels.items()}
    assert all((g.sum((1, 2)) == 49).all() and not g[:, 40:].any() for g in gt.values())
    entries = []
    for name, g in gt.items():
        probs = g.astype(np.float32)
        probs[0, 43:45, 10:12] = 1.0
        probs[1, 44, 30] = 1.0
        entries.append((name, save_probs(root / 'dump', name, torch.from_numpy(probs))))
    write_index(root / 'dump', CLASSES, 'uint8', 1.0, entries)
    return dict(data=root / 'data', dump=root / 'dump', gt=gt)


def _decoded(path: Path) -> dict[str, np.ndarray]:
    return dict(read_submission(path, shape=(SIZE, SIZE)))


def test_tuned_rules_remove_the_stray_blobs(tree, tmp_path, capsys):
    thr = tmp_path / 'thr.json'
    load_tool('tune_thresholds').main([str(tree['dump']), '--data-root', str(tree['data']),
                                       '--out', str(thr)])
    printed = capsys.readouterr().out
    saved = json.loads(thr.read_text())
    # median area 49: candidate sizes 2, 5, 12; the mildest that removes the stray wins
    assert saved['postprocess'] == {'finger-1': {'largest': False, 'min_size': 5},
                                    'finger-2': {'largest': False, 'min_size': 2}}
    assert saved['dice_postprocessed'] == 1.0 > saved['dice_after']
    assert 'min 5' in printed and '2 classes' in printed

    out = tmp_path / 'sub.csv'
    load_tool('ensemble').main([str(tree['dump']), '--thresholds', str(thr), '--out', str(out),
                                '--data-root', str(tree['data'])])
    for name, masks in _decoded(out).items():
        assert np.array_equal(masks, tree['gt'][name])
    # the model column is thresholded only, the ensemble column post-processed too
    mean = (tmp_path / 'sub_dice.csv').read_text().splitlines()[-1].split(',')
    assert mean[0] == 'mean'
    assert [float(v) for v in mean[1:]] == pytest.approx([saved['dice_after'], 1.0], abs=2e-6)


@pytest.mark.parametrize('method', ['soft', 'hard'])
def test_ensemble_applies_a_hand_written_rule(tree, tmp_path, method):
    thr = tmp_path / 'thr.json'
    thr.write_text(json.dumps({'thresholds': {c: 0.5 for c in CLASSES},
                               'postprocess': {'finger-1': {'largest': True}}}))
    out = tmp_path / 'sub.csv'
    load_tool('ensemble').main([str(tree['dump']), str(tree['dump']), '--method', method,
                                '--thresholds', str(thr), '--out', str(out)])
    for name, masks in _decoded(out).items():
        assert np.array_equal(masks[0], tree['gt'][name][0])           # blob gone
        assert masks[1, 44, 30] and masks[1].sum() == 50              # no rule: speck stays


def test_no_postprocess_writes_no_section(tree, tmp_path):
    thr = tmp_path / 'thr.json'
    load_tool('tune_thresholds').main([str(tree['dump']), '--data-root', str(tree['data']),
                                       '--out', str(thr), '--no-postprocess'])
    saved = json.loads(thr.read_text())
    assert 'postprocess' not in saved and 'dice_postprocessed' not in saved


def test_ensemble_refuses_a_bad_section(tree, tmp_path):
    thr = tmp_path / 'thr.json'
    thr.write_text(json.dumps({'thresholds': {c: 0.5 for c in CLASSES},
                               'postprocess': {'road': {'largest': True}}}))
    out = tmp_path / 'sub.csv'
    with pytest.raises(SystemExit) as info:
        load_tool('ensemble').main([str(tree['dump']), '--thresholds', str(thr), '--out',
                                    str(out)])
    assert str(info.value.code).startswith(f"{thr}: postprocess: unknown classes ['road']")
    assert not out.exists()
