"""Wrist angle and hand side from the labels; folds that keep patients whole and balance them."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from handbone_mmseg.classes import CLASS_INDEX
from handbone_mmseg.datasets.folds import assign_folds, pose_stratum
from handbone_mmseg.evaluation.scoring import load_labels
from handbone_mmseg.functional.pose import hand_pose
from handbone_mmseg.phantom import generate_phantom


def box(name: str, cx: float, cy: float, w: float, h: float) -> tuple[int, np.ndarray]:
    return CLASS_INDEX[name], np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2],
                                        [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])


def hand(finger_deg: float = 0.0, mirror: bool = False) -> list:
    """A right hand in a PA view, fingers up (image y down): thumb at small x; the middle
    finger's distal phalanx turned by ``finger_deg`` about its metacarpal."""
    t = np.radians(finger_deg)
    tip = np.array([50.0, 80.0]) + 40 * np.array([np.sin(t), -np.cos(t)])
    bones = [box('Radius', 42, 160, 8, 60), box('Ulna', 58, 160, 6, 60),
             box('finger-11', 50, 80, 6, 20), box('finger-8', *tip, 4, 8),
             box('finger-3', 20, 100, 6, 15), box('finger-2', 18, 85, 5, 10),
             box('finger-1', 16, 75, 4, 8), box('finger-19', 75, 85, 5, 15),
             box('finger-18', 77, 72, 4, 10), box('finger-17', 78, 64, 4, 6),
             box('finger-16', 79, 58, 3, 5)]
    if mirror:
        bones = [(c, np.column_stack([100 - p[:, 0], p[:, 1]])) for c, p in bones]
    return bones


@pytest.mark.parametrize('deg', [0.0, 20.0, -35.0])
def test_wrist_angle_is_the_turn_of_the_middle_finger_against_the_forearm(deg):
    angle, side = hand_pose(hand(deg))
    assert angle == pytest.approx(deg, abs=1e-6) and side == 'right'


def test_a_mirrored_hand_is_the_other_side_with_the_opposite_angle():
    angle, side = hand_pose(hand(20.0, mirror=True))
    assert side == 'left' and angle == pytest.approx(-20.0, abs=1e-6)


def test_pose_needs_the_bones_it_measures():
    assert hand_pose([b for b in hand() if b[0] != CLASS_INDEX['Radius'] and
                      b[0] != CLASS_INDEX['Ulna']]) is None
    assert pose_stratum([]) == 'unknown'


def test_phantom_sides_match_their_names(tmp_path):
    generate_phantom(tmp_path, patients=6, size=192, seed=0, test_patients=1)
    labels = load_labels(tmp_path, 'train/DCM', 'train/outputs_json')
    named = {n: ('right' if n.endswith('_R.png') else 'left') for n in labels
             if n.endswith(('_R.png', '_L.png'))}
    assert named and all(hand_pose(labels[n]['polygons'])[1] == s for n, s in named.items())
    # each patient: one left hand and one right
    sides = Counter((i['patient'], hand_pose(i['polygons'])[1]) for i in labels.values())
    assert set(sides.values()) == {1} and len(sides) == 12


@pytest.fixture(scope='module')
def forty(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp('folds')
    generate_phantom(root, patients=40, size=192, seed=0, test_patients=1)
    return list(load_labels(root, 'train/DCM', 'train/outputs_json').values())


@pytest.mark.parametrize('strategy', ['patient', 'patient_stratified'])
def test_folds_keep_patients_whole_and_are_deterministic(forty, strategy):
    folds = assign_folds(forty, 5, strategy)
    assert sorted(Counter(folds.values()).values()) == [8] * 5
    assert folds == assign_folds(list(reversed(forty)), 5, strategy)


def test_stratified_folds_balance_bent_wrists_better(forty):
    def spread(strategy: str) -> int:
        folds = assign_folds(forty, 5, strategy)
        bent = Counter(folds[e['patient']] for e in forty
                       if pose_stratum(e['polygons']).endswith('-bent'))
        return max(bent.values()) - min(bent.values())
    assert spread('patient_stratified') < spread('patient')
    assert spread('patient_stratified') <= 2


def test_an_unknown_strategy_is_refused(forty):
    with pytest.raises(ValueError, match=r"^fold_strategy must be one of \('patient', "
                                         r"'patient_stratified'\), got 'wrist'$"):
        assign_folds(forty, 5, 'wrist')


def test_the_dataset_splits_by_the_stratified_folds(tmp_path):
    from handbone_mmseg.datasets import HandBoneDataset
    generate_phantom(tmp_path, patients=10, size=128, seed=2, test_patients=1)
    labels = list(load_labels(tmp_path, 'train/DCM', 'train/outputs_json').values())
    folds = assign_folds(labels, 5, 'patient_stratified')

    def names(split: str, fold: int) -> set[str]:
        dataset = HandBoneDataset(split=split, n_folds=5, fold=fold,
                                  fold_strategy='patient_stratified', data_root=str(tmp_path),
                                  data_prefix=dict(img_path='train/DCM',
                                                   seg_map_path='train/outputs_json'),
                                  pipeline=[], check_pixels=False, serialize_data=False)
        return {Path(info['img_path']).name for info in dataset.data_list}

    for fold in range(5):
        val, train = names('val', fold), names('train', fold)
        assert val == {e['name'] for e in labels if folds[e['patient']] == fold}
        assert not val & train and len(val | train) == 20


def test_fold_strategy_is_checked_when_the_config_is_loaded():
    from handbone_mmseg.apis import load_config

    from helpers import ROOT
    cfg = load_config(ROOT / 'configs' / 'tiny_cpu_handbone.py',
                      {'fold_strategy': 'patient_stratified'})
    assert cfg.train_dataloader.dataset.fold_strategy == 'patient_stratified'
    assert cfg.val_dataloader.dataset.fold_strategy == 'patient_stratified'
    with pytest.raises(ValueError, match=r"^fold_strategy must be one of \('patient', "
                                         r"'patient_stratified'\), got 'wrist'$"):
        load_config(ROOT / 'configs' / 'tiny_cpu_handbone.py', {'fold_strategy': 'wrist'})
