"""Folds of the labeled images that keep each patient whole: plain, or stratified by pose.

``fold_strategy`` (the dataset base's switch, ``HandBoneDataset(fold_strategy=...)``):

- ``'patient'``: patients shuffled with the seed and dealt round-robin
  (``patient_folds``); fold sizes differ by at most one patient.
- ``'patient_stratified'``: scikit-learn's ``StratifiedGroupKFold`` with the patient as the
  group and, as the class of each image, its hand side and whether its wrist is bent by
  ``BENT_DEGREES`` or more (``functional.pose.hand_pose``), so that every fold holds about
  the same share of bent wrists and of left and right hands.
"""
from collections.abc import Sequence

import numpy as np

from ..functional.pose import BENT_DEGREES, hand_pose

FOLD_STRATEGIES = ('patient', 'patient_stratified')


def patient_folds(patients: list[str], n_folds: int, seed: int = 0) -> dict[str, int]:
    """Assign each patient to one of ``n_folds`` folds, deterministically.

    Patients are sorted, shuffled with ``seed`` and dealt round-robin, so fold sizes differ
    by at most one patient and both images of a patient always land in the same fold.
    """
    ordered = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(ordered))
    return {ordered[j]: i % n_folds for i, j in enumerate(order)}


def pose_stratum(polygons: Sequence) -> str:
    """An image's stratum: ``'left-bent'``, ``'right-straight'`` ... or ``'unknown'``."""
    pose = hand_pose(polygons)
    if pose is None:
        return 'unknown'
    angle, side = pose
    return f'{side}-{"bent" if abs(angle) >= BENT_DEGREES else "straight"}'


def assign_folds(entries: Sequence[dict], n_folds: int, strategy: str = 'patient',
                 seed: int = 0) -> dict[str, int]:
    """Each patient's fold, from the dataset's entries (``patient`` and ``polygons``).

    Raises:
        ValueError: an unknown strategy, or fewer patients than folds.
    """
    if strategy not in FOLD_STRATEGIES:
        raise ValueError(f'fold_strategy must be one of {FOLD_STRATEGIES}, got {strategy!r}')
    patients = [e['patient'] for e in entries]
    if len(set(patients)) < n_folds:
        raise ValueError(f'n_folds={n_folds} needs at least {n_folds} patients, got '
                         f'{len(set(patients))}')
    if strategy == 'patient':
        return patient_folds(patients, n_folds, seed)
    from sklearn.model_selection import StratifiedGroupKFold
    # sorted, so that the folds do not depend on the order the images were found in
    order = sorted(range(len(entries)), key=lambda i: (patients[i], entries[i].get('name', '')))
    strata = [pose_stratum(entries[i].get('polygons') or []) for i in order]
    groups = [patients[i] for i in order]
    split = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = {}
    for fold, (_, held) in enumerate(split.split(np.zeros(len(order)), strata, groups)):
        folds.update({groups[i]: fold for i in held})
    return folds
