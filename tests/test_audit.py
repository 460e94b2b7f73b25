"""The data report and the label audit: hand geometry, planted errors found by the anatomy
rules (no model) and by out-of-fold predictions, the tools' outputs and errors, and the
exclusion of annotations marked as wrong."""
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from handbone_mmseg.audit.api import audit_labels
from handbone_mmseg.audit.disagreement import (
    compare,
    compare_all,
    model_findings,
    model_support,
)
from handbone_mmseg.audit.findings import Finding
from handbone_mmseg.audit.fingerprint import collect_facts, data_sources, label_infos
from handbone_mmseg.audit.predictions import Predictions
from handbone_mmseg.audit.rank import (
    AUDIT_COLUMNS,
    RankedLabel,
    combine,
    planted_scores,
    rank_findings,
)
from handbone_mmseg.audit.rules import rule_findings
from handbone_mmseg.audit.synthetic import write_synthetic_dump
from handbone_mmseg.classes import CLASS_INDEX, CLASSES, IGNORE_VALUE
from handbone_mmseg.cli import run_tool
from handbone_mmseg.functional.anatomy import hand_frame, outside_distance, polygon_area
from handbone_mmseg.functional.labels import rasterize_polygons
from handbone_mmseg.functional.pose import hand_pose
from handbone_mmseg.io.layout import index_images
from handbone_mmseg.phantom import generate_phantom, read_planted

from helpers import all_bones, load_tool, square, write_case

SIZE, PATIENTS, SEED, NOISE = 256, 16, 0, 0.3
SWAPS = ('finger_swap', 'carpal_swap')


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob('*')}


@pytest.fixture(scope='module')
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One phantom twice, with and without planted errors, and dumps made from the clean
    labels: the out-of-fold predictions of a good model that never saw the errors."""
    root = tmp_path_factory.mktemp('audit')
    kwargs = dict(size=SIZE, seed=SEED, test_patients=2, test_labels=True)
    generate_phantom(root / 'noisy', PATIENTS, label_noise=NOISE, **kwargs)
    generate_phantom(root / 'clean', PATIENTS, **kwargs)
    write_synthetic_dump(root / 'clean', root / 'oof')
    write_synthetic_dump(root / 'clean', root / 'test_probs', img_dir='test/DCM',
                         ann_dir='test_labels/outputs_json')
    return dict(root=root, noisy=root / 'noisy', clean=root / 'clean', oof=root / 'oof',
                test_probs=root / 'test_probs')


@pytest.fixture(scope='module')
def audit(phantoms: dict[str, Path]) -> dict:
    facts = collect_facts(data_sources(phantoms['noisy']))
    rules, _ = rule_findings(facts)
    agreements = compare_all(Predictions([phantoms['oof']]), label_infos(facts))
    planted = read_planted(phantoms['noisy'])
    touched = len({(e['image'], c) for e in planted for c in e['classes']})
    return dict(facts=facts, rules=rules, model=model_findings(agreements),
                support=model_support(agreements), planted=planted, top=touched)


# --- hand geometry -------------------------------------------------------------------------

def test_polygon_area_by_hand() -> None:
    assert polygon_area(np.array(square(0, 0, 10), float)) == 100
    assert polygon_area(np.array([[0, 0], [4, 0], [0, 3]], float)) == 6  # either winding
    assert polygon_area(np.array([[0, 3], [4, 0], [0, 0]], float)) == 6


def test_outside_distance_signed() -> None:
    box = [np.array(square(0, 0, 10), float)]
    assert outside_distance(np.array([13.0, 5.0]), box) == pytest.approx(3)
    assert outside_distance(np.array([5.0, 2.0]), box) == pytest.approx(-2)
    assert np.isnan(outside_distance(np.array([0.0, 0.0]), []))


def test_hand_frame_turns_mirrors_and_scales_with_the_hand(audit: dict) -> None:
    facts = next(f for f in audit['facts'] if f.labeled and f.present.all())
    frame = hand_frame(facts.centroids)
    coords = frame.coords(facts.centroids)
    # a mirrored, turned, enlarged copy of the hand has the same frame coordinates
    turn = np.deg2rad(37)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    moved = (facts.centroids * (-1, 1)) @ rotation.T * 2.5 + (100, -40)
    assert hand_frame(moved).coords(moved) == pytest.approx(coords)
    # the thumb lies on the small side of "across", the little finger on the large
    assert coords[CLASS_INDEX['finger-1'], 1] < coords[CLASS_INDEX['finger-16'], 1]
    assert coords[CLASS_INDEX['finger-8'], 0] > coords[CLASS_INDEX['finger-11'], 0]
    fewer = np.full_like(facts.centroids, np.nan)
    fewer[CLASS_INDEX['Lunate']] = facts.centroids[CLASS_INDEX['Lunate']]
    assert hand_frame(fewer) is None


# --- planted errors ------------------------------------------------------------------------

def json_of(root: Path, name: str) -> dict:
    path = next((root / 'train' / 'outputs_json').rglob(Path(name).stem + '.json'))
    return json.loads(path.read_text())


def polygons_by_label(doc: dict) -> dict[str, list[list]]:
    out: dict[str, list[list]] = {}
    for ann in doc['annotations']:
        out.setdefault(ann['label'], []).append(ann['points'])
    return out


def test_planted_errors_are_what_the_record_says(phantoms: dict[str, Path]) -> None:
    planted = read_planted(phantoms['noisy'])
    assert len(planted) == round(NOISE * 2 * PATIENTS)
    assert {e['kind'] for e in planted} == set(SWAPS) | {'shift', 'missing', 'extra'}
    for e in planted:
        noisy = polygons_by_label(json_of(phantoms['noisy'], e['image']))
        clean = polygons_by_label(json_of(phantoms['clean'], e['image']))
        changed = sorted(k for k in CLASSES if noisy.get(k) != clean.get(k))
        assert changed == sorted(e['classes']), e
        if e['kind'] in SWAPS:
            a, b = e['classes']
            assert noisy[a] == clean[b] and noisy[b] == clean[a]
        elif e['kind'] == 'missing':
            assert e['classes'][0] not in noisy
        elif e['kind'] == 'shift':
            (name, ) = e['classes']
            moved = np.clip(np.array(clean[name][0]) + (e['dx'], e['dy']), 0, SIZE - 1)
            assert noisy[name] == [moved.tolist()] and (e['dx'], e['dy']) != (0, 0)
        else:
            assert len(noisy[e['classes'][0]]) == 2 and noisy[e['classes'][0]][0] == \
                clean[e['classes'][0]][0]
    # only an accessory ossicle changes the picture
    for png in (phantoms['clean'] / 'train' / 'DCM').rglob('*.png'):
        other = phantoms['noisy'] / png.relative_to(phantoms['clean'])
        extra = any(e['image'] == png.name and e['kind'] == 'extra' for e in planted)
        assert (png.read_bytes() != other.read_bytes()) == extra


def test_label_noise_is_deterministic(tmp_path: Path) -> None:
    for name in 'ab':
        generate_phantom(tmp_path / name, 3, size=64, seed=4, test_patients=0, label_noise=1.0)
    a, b = (tmp_path / name / 'planted_errors.json' for name in 'ab')
    assert a.read_bytes() == b.read_bytes()
    assert len(read_planted(tmp_path / 'a')) == 6  # every train image, one error each


# --- the proof: planted errors found -------------------------------------------------------

def test_anatomy_rules_find_the_swaps_without_a_model(audit: dict) -> None:
    scores = planted_scores(rank_findings(audit['rules']), audit['planted'], audit['top'])
    for kind in (*SWAPS, 'missing', 'extra'):
        found, planted = scores['kinds'][kind]
        assert found == planted > 0, (kind, scores)
    assert scores['precision'] >= 0.85, scores


def test_out_of_fold_predictions_find_the_shifted_polygons(audit: dict) -> None:
    ranked = rank_findings(audit['model'])
    scores = planted_scores(ranked, audit['planted'], audit['top'])
    assert scores['kinds']['shift'][0] == scores['kinds']['shift'][1] == 2, scores
    assert scores['precision'] >= 0.9, scores
    shifted = {(e['image'], e['classes'][0]) for e in audit['planted'] if e['kind'] == 'shift'}
    row = next(r for r in ranked if (r.image, r.cls) in shifted)
    assert row.kinds[0] == 'model' and 'between label and out-of-fold prediction' in \
        row.findings[0].evidence


def test_rules_and_model_together(audit: dict) -> None:
    together = rank_findings(audit['rules'] + audit['model'], support=audit['support'])
    scores = planted_scores(together, audit['planted'], audit['top'])
    assert scores['recall'] == 1 and scores['precision'] >= 0.9, scores
    # without the model's support, the rule evidence against the innocent neighbours of a
    # shifted bone outranks some shifts
    plain = planted_scores(rank_findings(audit['rules'] + audit['model']), audit['planted'],
                           audit['top'])
    assert plain['precision'] < scores['precision']


def test_a_model_swap_names_both_bones(audit: dict) -> None:
    swap = next(e for e in audit['planted'] if e['kind'] == 'carpal_swap')
    said = {(f.cls, f.partner) for f in audit['model']
            if f.kind == 'model_swap' and f.image == swap['image']}
    a, b = swap['classes']
    assert {(a, b), (b, a)} <= said


def test_clean_labels_raise_no_strong_suspicion(phantoms: dict[str, Path]) -> None:
    facts = collect_facts(data_sources(phantoms['clean']))
    found, _ = rule_findings(facts)
    ranked = rank_findings(found)
    assert not ranked or ranked[0].score < 0.5, ranked[:3]


# --- ranking and model comparison by hand --------------------------------------------------

def test_ranking_combines_kinds_as_independent_evidence() -> None:
    findings = [Finding('a.png', 'Lunate', 'order', 0.5, 'x', 'Capitate'),
                Finding('a.png', 'Lunate', 'swap', 0.5, 'y', 'Capitate'),
                Finding('a.png', 'Lunate', 'swap', 0.2, 'weaker, same kind'),
                Finding('b.png', 'Hamate', 'missing', 0.7, 'z')]
    ranked = rank_findings(findings, {'a.png': 'ID001'}, absent={('b.png', 'Hamate')})
    assert combine([0.5, 0.5]) == pytest.approx(0.75)
    assert [(r.image, r.cls, round(r.score, 4)) for r in ranked] == \
        [('a.png', 'Lunate', 0.75), ('b.png', 'Hamate', 0.7)]
    assert ranked[0].partner == 'Capitate' and ranked[0].patient == 'ID001'
    assert ranked[0].exclude_line == 'a.png Lunate'
    assert ranked[1].exclude_line == 'b.png *'  # a missing bone has no pixels to leave out
    with pytest.raises(ValueError, match='kind'):
        Finding('a.png', 'Lunate', 'hunch', 0.5, '')
    # a model that agrees with the label weighs down rule evidence a neighbour can raise,
    # not a missing bone or a second piece
    findings = [Finding('a.png', 'Lunate', 'overlap', 0.5, 'x', 'Capitate'),
                Finding('a.png', 'Capitate', 'overlap', 0.5, 'x', 'Lunate'),
                Finding('a.png', 'Hamate', 'pieces', 0.9, 'y')]
    support = {('a.png', 'Lunate'): 1.0, ('a.png', 'Capitate'): 0.5, ('a.png', 'Hamate'): 1.0}
    ranked = rank_findings(findings, support=support)
    assert [(r.cls, r.score) for r in ranked] == [('Hamate', 0.9), ('Capitate', 0.25)]


def test_planted_scores_by_hand() -> None:
    rows = [RankedLabel(k, image, '', cls, 1.0, ()) for k, (image, cls) in enumerate(
        [('a', 'finger-4'), ('c', 'Radius'), ('b', 'Hamate')], 1)]
    planted = [dict(image='a', kind='finger_swap', classes=['finger-4', 'finger-8']),
               dict(image='b', kind='missing', classes=['Hamate'])]
    scores = planted_scores(rows, planted, 2)
    assert (scores['found'], scores['recall'], scores['precision']) == (1, 0.5, 0.5)
    assert scores['kinds'] == {'finger_swap': (1, 1), 'missing': (0, 1)}


def test_compare_counts_by_hand(tmp_path: Path) -> None:
    import torch

    from handbone_mmseg.io.prob_dump import begin_dump, save_probs, write_index
    write_case(tmp_path, 'ID001', 'image1', annotations=all_bones())
    info = index_images(tmp_path / 'train' / 'DCM', tmp_path / 'train' / 'outputs_json')[0]
    lunate, capitate = CLASS_INDEX['Lunate'], CLASS_INDEX['Capitate']
    label = rasterize_polygons(info['polygons'], (64, 64))
    probs = np.zeros((len(CLASSES), 64, 64), np.float32)
    probs[lunate] = 0.8 * ((label >> capitate) & 1)  # Lunate predicted on the Capitate
    probs[capitate] = 0.8 * ((label >> lunate) & 1)
    begin_dump(tmp_path / 'dump')
    entry = save_probs(tmp_path / 'dump', 'image1.png', torch.from_numpy(probs))
    write_index(tmp_path / 'dump', CLASSES, 'uint8', 1.0, [('image1.png', entry)])
    result = compare(Predictions([tmp_path / 'dump']), 'image1.png', info)
    assert result.dice[lunate] == pytest.approx(1e-4 / (2 * 81 + 1e-4))  # 9x9 squares apart
    assert result.on_label[lunate, capitate] == 1 and result.on_label[lunate, lunate] == 0
    # 81 predicted pixels at 0.8 (|2p - 1| = 0.6), 81 labeled ones at 0 (1.0)
    assert result.confidence[lunate] == pytest.approx((abs(2 * 204 / 255 - 1) + 1) / 2)
    assert (result.pred_px[0], result.label_px[0]) == (0, 81)  # finger-1 not predicted
    found = model_findings([result])
    assert {(f.cls, f.partner) for f in found if f.kind == 'model_swap'} == \
        {('Lunate', 'Capitate'), ('Capitate', 'Lunate')}


# --- the tools -----------------------------------------------------------------------------

def run(tool: str, argv: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, 'argv', [f'{tool}.py'])
    module = load_tool(tool)
    status = run_tool(lambda: module.main(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_analyze_data_report(phantoms: dict[str, Path], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(phantoms['noisy'])
    out = tmp_path / 'report'
    status, printed, err = run('analyze_data', [str(phantoms['noisy']), '--out', str(out),
                                                '--probs', str(phantoms['test_probs']),
                                                '--workers', '0'], monkeypatch, capsys)
    assert status == 0, err
    assert printed.splitlines()[-1] == f'report: {out / "report.html"}'
    assert snapshot(phantoms['noisy']) == before  # nothing written into the data root
    summary = json.loads((out / 'summary.json').read_text())
    train, test = summary['splits']['train'], summary['splits']['test']
    assert (train['images'], train['patients'], train['images_per_patient']) == \
        (2 * PATIENTS, PATIENTS, {'2': PATIENTS})
    assert (test['images'], test['wrist_angle']['source']) == (4, 'predictions')
    assert train['sizes'] == {f'{SIZE}x{SIZE}': 2 * PATIENTS} and train['bit_depths'] == {'8': 32}
    rows = list(csv.DictReader((out / 'images.csv').open()))
    truth = {i['name']: hand_pose(i['polygons']) for i in index_images(
        phantoms['clean'] / 'test' / 'DCM', phantoms['clean'] / 'test_labels' / 'outputs_json')}
    for row in rows:
        if row['split'] == 'test':  # from the predictions, as from the labels
            assert float(row['angle']) == pytest.approx(truth[row['name']][0], abs=5)
            assert row['side'] == truth[row['name']][1]
    classes = {r['class']: r for r in csv.DictReader((out / 'classes.csv').open())}
    missing = sum(e['kind'] == 'missing' for e in read_planted(phantoms['noisy']))
    assert sum(int(r['missing']) for r in classes.values()) == missing
    pairs = {(r['class_a'], r['class_b']): r for r in csv.DictReader((out / 'overlaps.csv').open())}
    assert float(pairs[('Trapezium', 'Trapezoid')]['share_of_images']) > 0.9  # by design
    page = (out / 'report.html').read_text()
    for chart in ('wrist_angles.png', 'class_areas.png', 'overlaps.png'):
        assert f'src="{chart}"' in page and (out / chart).stat().st_size > 1000


def test_audit_labels_outputs(phantoms: dict[str, Path], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(phantoms['noisy'])
    out = tmp_path / 'audit'
    status, printed, err = run('audit_labels', [str(phantoms['noisy']), '--out', str(out),
                                                '--oof', str(phantoms['oof']), '--top', '5',
                                                '--workers', '0'], monkeypatch, capsys)
    assert status == 0, err
    assert snapshot(phantoms['noisy']) == before
    with (out / 'audit.csv').open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == AUDIT_COLUMNS
    scores = [float(r['score']) for r in rows]
    assert scores == sorted(scores, reverse=True) and [int(r['rank']) for r in rows] == \
        list(range(1, len(rows) + 1))
    assert all(r['exclude_line'].split()[0] == r['image'] for r in rows)
    page = (out / 'audit.html').read_text()
    assert page.count('class="case"') == 5 and page.count('data:image/png;base64,') == 5
    assert f'data-line="{rows[0]["exclude_line"]}  # audit rank 1' in page
    assert printed.splitlines()[-1] == f'page: {out / "audit.html"}'


def test_audit_without_model_and_with_two_dumps(phantoms: dict[str, Path],
                                                tmp_path: Path) -> None:
    alone = audit_labels(phantoms['noisy'], tmp_path / 'rules', top=1, workers=0)
    assert {f.kind for r in alone.ranked for f in r.findings}.isdisjoint({'model', 'model_swap'})
    twice = audit_labels(phantoms['noisy'], tmp_path / 'two', [phantoms['oof'], phantoms['oof']],
                         top=1, workers=0)
    once = audit_labels(phantoms['noisy'], tmp_path / 'one', [phantoms['oof']], top=1,
                        workers=0)
    # an image in two dumps gets their mean: the same dump twice changes nothing
    assert [(r.image, r.cls, r.score) for r in twice.ranked] == \
        [(r.image, r.cls, r.score) for r in once.ranked]
    assert not (tmp_path / 'rules' / 'agreement.csv').exists()  # no model, no agreement
    with open(tmp_path / 'one' / 'agreement.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    # every labeled image of the dump, the 29 classes each; Dice in [0, 1], and a perfect
    # pair where the stand-in dump was made from the very label
    images = {r['image'] for r in rows}
    assert len(rows) == 29 * len(images) and len(images) >= 8
    assert all(0 <= float(r['dice']) <= 1 and 0 <= float(r['confidence']) <= 1 for r in rows)
    assert float(np.median([float(r['dice']) for r in rows])) > 0.8


@pytest.fixture
def bad_inputs(phantoms: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A copy of the noisy data with one broken JSON, and dumps that do not fit."""
    broken = tmp_path / 'broken'
    shutil.copytree(phantoms['noisy'], broken)
    bad_json = sorted((broken / 'train' / 'outputs_json').rglob('*.json'))[3]
    bad_json.write_text('{"annotations": [')
    other_classes = tmp_path / 'other_classes'
    shutil.copytree(phantoms['oof'], other_classes)
    index = json.loads((other_classes / 'index.json').read_text())
    index['classes'] = ['bone'] * len(CLASSES)
    (other_classes / 'index.json').write_text(json.dumps(index))
    return dict(broken=broken, bad_json=bad_json, other_classes=other_classes,
                no_dump=tmp_path / 'nothing')


@pytest.mark.parametrize('tool, args, message', [
    ('audit_labels', ['{missing}', '--out', '{tmp}/o'], '{missing}: data root not found'),
    ('analyze_data', ['{noisy}', '--out', '{noisy}/report'],
     '{noisy}/report: lies inside the data root {noisy}; the data tools never write there, '
     'choose an --out outside it'),
    ('audit_labels', ['{broken}', '--out', '{tmp}/o'],
     '{bad_json}: malformed JSON (Expecting value at line 1)'),
    ('audit_labels', ['{noisy}', '--out', '{tmp}/o', '--oof', '{other_classes}'],
     "{other_classes}: a dump of 29 other classes (bone, bone, bone, ...), not the 29 hand "
     'bones in their order'),
    ('audit_labels', ['{noisy}', '--out', '{tmp}/o', '--oof', '{no_dump}'],
     '{no_dump}/index.json: no probability index (write one with tools/test.py --out DIR '
     '--save-probs)'),
    ('analyze_data', ['{noisy}', '--out', '{tmp}/o', '--probs', '{oof}'],
     '{oof}: image {first} is not among the images under {noisy}/test/DCM (a dump of other '
     'images?)'),
])
def test_bad_input_is_one_line_naming_the_file(phantoms, bad_inputs, tmp_path, monkeypatch,
                                               capsys, tool, args, message):
    names = dict(missing=str(tmp_path / 'missing'), tmp=str(tmp_path),
                 noisy=str(phantoms['noisy']), oof=str(phantoms['oof']),
                 first=Predictions([phantoms['oof']]).names[0],
                 **{k: str(v) for k, v in bad_inputs.items()})
    status, _, err = run(tool, [a.format(**names) for a in args], monkeypatch, capsys)
    assert status == 1
    assert err.strip().splitlines() == [f'error: {message.format(**names)}']
    assert not (tmp_path / 'o' / 'audit.csv').exists()


# --- leaving out annotations marked as wrong -----------------------------------------------

def labeled_root(root: Path) -> Path:
    for p in range(1, 4):
        write_case(root, f'ID{p:03d}', f'image{p}', annotations=all_bones())
    return root


@pytest.mark.parametrize('text, message', [
    ('image1.png finger-3 extra\n', "{f}:1: expected \"IMAGE CLASS\" (or \"IMAGE *\"), got "
                                    "'image1.png finger-3 extra'"),
    ('# ok\n\nimage9.png Lunate\n', "{f}:3: unknown image 'image9.png': no image of this file "
                                    'name in the data set'),
    ('image1.png  Lunate # fine\nimage2.png finger-99\n',
     "{f}:2: unknown class 'finger-99' (one of the 29 class names, e.g. 'finger-1', or '*')"),
])
def test_bad_exclusion_lines(tmp_path: Path, text: str, message: str) -> None:
    from handbone_mmseg.datasets.handbone import read_excluded_labels
    from handbone_mmseg.io import AnnotationError
    path = tmp_path / 'excluded_labels.txt'
    path.write_text(text)
    with pytest.raises(AnnotationError) as e:
        read_excluded_labels(path, {'image1.png', 'image2.png'})
    assert str(e.value) == message.format(f=path)


def test_excluded_annotation_becomes_ignored_pixels(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from handbone_mmseg.datasets import HandBoneDataset, LoadMultiLabelAnnotations
    from handbone_mmseg.datasets import handbone as module
    root = labeled_root(tmp_path)
    (root / 'excluded_labels.txt').write_text(
        '# checked in the audit\nimage1.png finger-3  # swapped with finger-7\n'
        'image1.png finger-7\nimage3.png *\n')
    said = []
    monkeypatch.setattr(module, 'print_log', lambda message, logger: said.append(message))
    dataset = HandBoneDataset(data_root=str(root), pipeline=[],
                              data_prefix=dict(img_path='train/DCM',
                                               seg_map_path='train/outputs_json'))
    assert sorted(dataset.get_data_info(i)['name'] for i in range(len(dataset))) == \
        ['image1.png', 'image2.png']
    assert dataset.excluded == dict(annotations=2, polygons=2, images=1)
    assert said == [f'{root / "excluded_labels.txt"}: all split: annotations left out: 2 (2 '
                    'polygons, their pixels ignored); whole images left out: 1; lines listed: 3']
    info = next(dataset.get_data_info(i) for i in range(len(dataset))
                if dataset.get_data_info(i)['name'] == 'image1.png')
    original = {c: p for c, p in index_images(root / 'train' / 'DCM',
                                              root / 'train' / 'outputs_json')[0]['polygons']}
    wrong = [(c, original[c]) for c in (CLASS_INDEX['finger-3'], CLASS_INDEX['finger-7'])]
    kept = [(c, p) for c, p in original.items() if c not in dict(wrong)]
    for shape in ((64, 64), (32, 32)):  # at the original size, and after a resize
        sample = LoadMultiLabelAnnotations().transform(dict(info, img_shape=shape))
        label = sample['gt_seg_map']
        ignored = rasterize_polygons(wrong, shape, scale=(shape[1] / 64, shape[0] / 64)) != 0
        assert ignored.any() and ((label == IGNORE_VALUE) == ignored).all()
        expected = rasterize_polygons(kept, shape, scale=(shape[1] / 64, shape[0] / 64))
        assert (label[~ignored] == expected[~ignored]).all()


def test_exclusion_switches_and_errors(tmp_path: Path) -> None:
    from handbone_mmseg.datasets import HandBoneDataset
    from handbone_mmseg.io import AnnotationError
    root = labeled_root(tmp_path)
    prefix = dict(img_path='train/DCM', seg_map_path='train/outputs_json')

    def build(**kwargs) -> HandBoneDataset:
        return HandBoneDataset(data_root=str(root), pipeline=[], data_prefix=prefix, **kwargs)

    assert build().excluded == dict(annotations=0, polygons=0, images=0)  # no list: nothing
    with pytest.raises(FileNotFoundError, match='mine.txt: excluded labels file not found'):
        build(excluded_labels='mine.txt')
    (root / 'excluded_labels.txt').write_text('image2.png Lunate\n')
    assert build(excluded_labels=None).excluded['annotations'] == 0
    json_path = root / 'train' / 'outputs_json' / 'ID002' / 'image2.json'
    doc = json.loads(json_path.read_text())
    doc['annotations'] = [a for a in doc['annotations'] if a['label'] != 'Lunate']
    json_path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError) as e:
        build()
    assert str(e.value) == (f'{root / "excluded_labels.txt"}: image2.png has no Lunate polygon '
                            f'to leave out ({json_path}); to drop an image whose Lunate is '
                            'missing, list "image2.png *"')


def test_train_stops_on_a_bad_exclusion_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / 'data'
    generate_phantom(root, 2, size=64, seed=0, test_patients=0)
    name = next((root / 'train' / 'DCM').rglob('*.png')).name
    (root / 'excluded_labels.txt').write_text(f'{name} Lunate\n{name} Lunatee\n')
    status, out, err = run('train', ['configs/tiny_cpu_handbone.py', '--work-dir',
                                     str(tmp_path / 'work'), '--cfg-options',
                                     f'data_root={root}', 'n_folds=2'], monkeypatch, capsys)
    assert status == 1
    assert err.strip().splitlines()[-1] == (
        f"error: {root / 'excluded_labels.txt'}:2: unknown class 'Lunatee' (one of the 29 "
        "class names, e.g. 'finger-1', or '*')")


def test_validation_folds_keep_a_whole_image_exclusion(tmp_path: Path) -> None:
    """Before: ``IMAGE *`` left the image out of its validation fold too, so the folds'
    out-of-fold predictions no longer covered the labeled set (the recipe's pool stopped)."""
    from handbone_mmseg.datasets import HandBoneDataset
    root = labeled_root(tmp_path)
    (root / 'excluded_labels.txt').write_text('image3.png *\nimage1.png Lunate\n')

    def names(split: str, fold: int) -> list[str]:
        dataset = HandBoneDataset(data_root=str(root), pipeline=[], split=split, n_folds=3,
                                  fold=fold, data_prefix=dict(img_path='train/DCM',
                                                              seg_map_path='train/outputs_json'))
        return [dataset.get_data_info(i)['name'] for i in range(len(dataset))]

    assert sorted(n for fold in range(3) for n in names('val', fold)) == \
        ['image1.png', 'image2.png', 'image3.png']
    assert all('image3.png' not in names('train', fold) for fold in range(3))


def test_an_excluded_bone_stays_inside_the_wrist_crop(tmp_path: Path) -> None:
    """Before: an excluded carpal left the polygons CropToClasses boxes, so the training crop
    shrank where stage 1's box at test time does not."""
    from handbone_mmseg.datasets import CropToClasses, HandBoneDataset
    root = labeled_root(tmp_path)
    prefix = dict(img_path='train/DCM', seg_map_path='train/outputs_json')
    full = HandBoneDataset(data_root=str(root), pipeline=[], data_prefix=prefix)
    (root / 'excluded_labels.txt').write_text('image1.png Lunate\n')
    less = HandBoneDataset(data_root=str(root), pipeline=[], data_prefix=prefix)
    crop = CropToClasses(classes=['Lunate', 'Scaphoid'], margin=0.0)

    def box(dataset: HandBoneDataset) -> list[int]:
        info = next(dataset.get_data_info(i) for i in range(len(dataset))
                    if dataset.get_data_info(i)['name'] == 'image1.png')
        image = np.zeros((*info['ori_shape'], 3), np.uint8)
        return crop.transform(dict(info, img=image))['roi']

    assert box(less) == box(full) and box(full) is not None


def test_the_page_warns_when_the_out_of_fold_models_are_weak(
        phantoms: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from handbone_mmseg.audit import api
    good = audit_labels(phantoms['noisy'], tmp_path / 'good', [phantoms['oof']], top=1,
                        workers=0)
    assert 'their disagreement says little' not in good.page.read_text()
    monkeypatch.setattr(api, 'WEAK_MODEL_DICE', 1.01)  # every model is weak by this bar
    weak = audit_labels(phantoms['noisy'], tmp_path / 'weak', [phantoms['oof']], top=1,
                        workers=0)
    assert 'their disagreement says little' in weak.page.read_text()


def test_a_labeled_test_set_under_the_same_root_takes_the_list(tmp_path: Path) -> None:
    """Before: a labeled test split built under a root with ``excluded_labels.txt`` stopped
    on every line naming a training image ("unknown image")."""
    from handbone_mmseg.datasets import HandBoneDataset
    from handbone_mmseg.io import AnnotationError
    root = labeled_root(tmp_path)
    write_case(root, 'ID009', 'image9', annotations=all_bones(), split='test')
    (root / 'excluded_labels.txt').write_text('image1.png Lunate\nimage9.png finger-1\n')
    test = HandBoneDataset(data_root=str(root), pipeline=[], split='all',
                           data_prefix=dict(img_path='test/DCM', seg_map_path='test/outputs_json'))
    assert test.excluded == dict(annotations=1, polygons=1, images=0)
    (root / 'excluded_labels.txt').write_text('image7.png Lunate\n')  # in no folder
    with pytest.raises(AnnotationError, match="excluded_labels.txt:1: unknown image 'image7.png'"):
        HandBoneDataset(data_root=str(root), pipeline=[], split='all',
                        data_prefix=dict(img_path='test/DCM', seg_map_path='test/outputs_json'))
