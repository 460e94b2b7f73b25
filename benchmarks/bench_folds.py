"""Folds by patient against folds stratified by pose: bent wrists and hands per fold.

``python benchmarks/bench_folds.py [--patients 40 --folds 5]``: a phantom of that many
patients (192 px: only the labels matter), each image's stratum from its labels
(``datasets.folds.pose_stratum``: hand side, wrist bent by 15 degrees or more), and per fold
the count of each stratum under ``fold_strategy='patient'`` and ``'patient_stratified'``.
"""
import argparse
import tempfile
from collections import Counter

from handbone_mmseg.datasets.folds import assign_folds, pose_stratum
from handbone_mmseg.evaluation.scoring import load_labels
from handbone_mmseg.phantom import generate_phantom

STRATA = ('left-bent', 'left-straight', 'right-bent', 'right-straight')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--patients', type=int, default=40)
    parser.add_argument('--folds', type=int, default=5)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix='bench-folds-')
    generate_phantom(root, patients=args.patients, size=192, seed=0, test_patients=1)
    labels = list(load_labels(root, 'train/DCM', 'train/outputs_json').values())
    strata = {e['name']: pose_stratum(e['polygons']) for e in labels}
    print('| strategy | fold | ' + ' | '.join(STRATA) + ' | bent |')
    print('|---|---|' + '---|' * (len(STRATA) + 1))
    for strategy in ('patient', 'patient_stratified'):
        folds = assign_folds(labels, args.folds, strategy)
        count = Counter((folds[e['patient']], strata[e['name']]) for e in labels)
        for k in range(args.folds):
            bent = count[(k, 'left-bent')] + count[(k, 'right-bent')]
            print(f'| {strategy} | {k} | ' + ' | '.join(str(count[(k, s)]) for s in STRATA)
                  + f' | {bent} |')


if __name__ == '__main__':
    main()
