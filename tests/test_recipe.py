"""Recipes: the plan, stamps and invalidation, pooled out-of-fold choices, the fold ensemble."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.datasets.handbone import patient_folds
from handbone_mmseg.evaluation.scoring import gt_masks, load_labels
from handbone_mmseg.functional.rle import rle_encode
from handbone_mmseg.io.prob_dump import ProbDump, ProbDumpError, save_probs, write_index
from handbone_mmseg.io.submission import write_submission
from handbone_mmseg.phantom import generate_phantom
from handbone_mmseg.recipe import (
    RecipeError,
    build_plan,
    check_out_of_fold,
    execute,
    load_recipe,
    pool_dumps,
    select_ensemble,
    status,
)

from helpers import ROOT, load_tool

TINY = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
SMALL = {'train_scale': (64, 64), 'crop_size': (64, 64), 'test_scale': (64, 64),
         'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2,
         'default_hooks.checkpoint.interval': 2}
RECIPE = """data_root = {data!r}
work_dir = {work!r}
n_folds = 2
tta = False
models = dict(
    a=dict(config={tiny!r}, cfg_options={small!r}),
    b=dict(config={tiny!r}, cfg_options={small_b!r}),
)
ensembles = dict(max_size=2, weight_grid=[1, 2])
"""


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('recipe') / 'data'
    generate_phantom(root, patients=6, size=96, seed=1, test_patients=1)
    return root


def write_recipe(path: Path, data: Path, work: Path, **extra) -> Path:
    small_b = dict(SMALL, **extra)
    path.write_text(RECIPE.format(data=str(data), work=str(work), tiny=TINY, small=SMALL,
                                  small_b=small_b))
    return path


def fake_run(steps, log: list[str]) -> None:
    """Every step records its name instead of training or predicting."""
    for step in steps:
        step.command = None
        step.function = lambda step: log.append(step.name)


def test_the_plan_lists_every_fold_step_in_order(data, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / 'r.py', data, tmp_path / 'w'))
    names = [s.name for s in build_plan(recipe, ROOT / 'tools')]
    assert names == ['train/a/fold0', 'train/a/fold1', 'train/b/fold0', 'train/b/fold1',
                     'oof/a/fold0', 'test/a/fold0', 'oof/a/fold1', 'test/a/fold1',
                     'oof/b/fold0', 'test/b/fold0', 'oof/b/fold1', 'test/b/fold1',
                     'pool/a', 'pool/b', 'select', 'submission', 'report']
    assert recipe.candidates == (('a', ), ('b', ), ('a', 'b'))


def test_a_rerun_skips_what_is_done_and_an_edit_reruns_only_its_model(data, tmp_path):
    path = write_recipe(tmp_path / 'r.py', data, tmp_path / 'w')
    ran: list[str] = []
    steps = build_plan(load_recipe(path), ROOT / 'tools')
    fake_run(steps, ran)
    assert execute(load_recipe(path), steps, echo=lambda line: None) == ran
    assert len(ran) == 17
    ran.clear()
    steps = build_plan(load_recipe(path), ROOT / 'tools')
    fake_run(steps, ran)
    assert execute(load_recipe(path), steps, echo=lambda line: None) == [] == ran
    # one model's overrides change: its folds, its pool and everything after selection
    write_recipe(path, data, tmp_path / 'w', **{'optim_wrapper.optimizer.lr': 1e-3})
    recipe = load_recipe(path)
    steps = build_plan(recipe, ROOT / 'tools')
    why = {s.step.name: s.why for s in status(recipe, steps) if s.run}
    assert why == {'train/b/fold0': 'config changed', 'train/b/fold1': 'config changed',
                   'oof/b/fold0': 'after train/b/fold0', 'test/b/fold0': 'after train/b/fold0',
                   'oof/b/fold1': 'after train/b/fold1', 'test/b/fold1': 'after train/b/fold1',
                   'pool/b': 'after oof/b/fold0', 'select': 'after pool/b',
                   'submission': 'after select', 'report': 'after select'}
    fake_run(steps, ran)
    assert execute(recipe, steps, echo=lambda line: None) == list(why)


def test_only_and_from_select_steps(data, tmp_path):
    path = write_recipe(tmp_path / 'r.py', data, tmp_path / 'w')
    ran: list[str] = []
    steps = build_plan(load_recipe(path), ROOT / 'tools')
    fake_run(steps, ran)
    assert execute(load_recipe(path), steps, only=['train/*'], echo=lambda line: None) == \
        ['train/a/fold0', 'train/a/fold1', 'train/b/fold0', 'train/b/fold1']
    ran.clear()
    execute(load_recipe(path), steps, echo=lambda line: None)
    ran.clear()
    execute(load_recipe(path), steps, start='select', echo=lambda line: None)
    assert ran == ['select', 'submission', 'report']  # done, but redone from there
    with pytest.raises(ValueError, match=r'^--from selekt: no such step'):
        execute(load_recipe(path), steps, start='selekt', echo=lambda line: None)


def test_a_failed_step_leaves_no_stamp_and_runs_again(data, tmp_path):
    from handbone_mmseg.recipe import StepFailed
    path = write_recipe(tmp_path / 'r.py', data, tmp_path / 'w')
    recipe = load_recipe(path)
    steps = build_plan(recipe, ROOT / 'tools')
    fake_run(steps, [])
    steps[0].command, steps[0].function = (lambda: ['false']), None
    with pytest.raises(StepFailed, match=r'^train/a/fold0 failed \(exit status 1\)'):
        execute(recipe, steps, echo=lambda line: None)
    assert status(recipe, steps)[0].why == 'no stamp'


@pytest.mark.parametrize('edit, message', [
    ({'models.a.config': 'configs/nope.py'}, r"models\.a\.config: no config file "
                                             r"'configs/nope\.py'"),
    ({'ensembles': dict(candidates=[['a', 'c']])}, r"ensembles\.candidates\.0 names \['c'\]"),
    ({'folds': [0, 2]}, r'folds must be distinct integers in 0\.\.1 \(n_folds=2\), '
                        r'got \[0, 2\]'),
    ({'test_img_dir': 'train/outputs_json'}, r'test_img_dir: no images in '),
    ({'models.b.cfg_options': {'num_classes': 28}}, r'models predict different classes'),
    ({'models.a.cfg_options': {'data_rot': 'x'}}, r'models\.a\.cfg_options: --cfg-options '
                                                  r'data_rot: no such key'),
])
def test_bad_recipes_are_one_line_naming_the_key(data, tmp_path, edit, message):
    path = write_recipe(tmp_path / 'r.py', data, tmp_path / 'w')
    with pytest.raises(RecipeError, match=rf'^{path}: {message}'):
        load_recipe(path, edit)
    assert not (tmp_path / 'w').exists()  # nothing ran


def fold_dumps(data: Path, root: Path, models: dict[str, float]) -> dict[str, dict]:
    """Each model's per-fold validation dumps: the labels at ``models[m]`` plus noise."""
    labels = load_labels(data, 'train/DCM', 'train/outputs_json')
    folds = patient_folds([i['patient'] for i in labels.values()], 2)
    gen = torch.Generator().manual_seed(0)
    out = {}
    for model, strength in models.items():
        out[model] = {}
        for fold in (0, 1):
            folder = root / model / f'fold{fold}'
            entries = []
            for name, info in labels.items():
                if folds[info['patient']] != fold:
                    continue
                g = torch.from_numpy(gt_masks(info))
                noise = torch.rand(g.shape, generator=gen) * 0.6
                entries.append((name, save_probs(folder, name, torch.where(g, strength,
                                                                           noise))))
            write_index(folder, CLASSES, 'uint8', 1.0, entries)
            out[model][fold] = folder
    return out


def test_pooled_oof_covers_each_image_once_from_the_fold_that_did_not_train_on_it(data,
                                                                                  tmp_path):
    dumps = fold_dumps(data, tmp_path, {'a': 0.9})
    labels = load_labels(data, 'train/DCM', 'train/outputs_json')
    pool = pool_dumps(dumps['a'], tmp_path / 'pool')
    assert sorted(pool.images) == sorted(labels)
    check_out_of_fold(pool, labels, 2)  # no leak
    # the same probabilities as the fold dumps
    for fold, folder in dumps['a'].items():
        for name in ProbDump(folder).names:
            assert np.array_equal(pool.crops(name).dense(), ProbDump(folder).crops(name).dense())
    # a model's prediction of an image it trained on: the folds' dumps swapped
    swapped = pool_dumps({0: dumps['a'][1], 1: dumps['a'][0]}, tmp_path / 'swapped')
    with pytest.raises(ValueError, match=r'was predicted by the model of fold \d, which '
                                         r'trained on it'):
        check_out_of_fold(swapped, labels, 2)
    with pytest.raises(ProbDumpError, match=r'the folds overlap'):
        pool_dumps({0: dumps['a'][0], 1: dumps['a'][0]}, tmp_path / 'twice')


def test_selection_on_pooled_oof_prefers_the_better_model(data, tmp_path):
    dumps = fold_dumps(data, tmp_path, {'good': 0.95, 'poor': 0.55})
    labels = load_labels(data, 'train/DCM', 'train/outputs_json')
    pools = {m: pool_dumps(d, tmp_path / f'{m}_pool') for m, d in dumps.items()}
    result = select_ensemble(pools, labels, [('good', ), ('poor', ), ('good', 'poor')],
                             [1, 2])
    rows = {(tuple(r['models']), tuple(r['weights'])): r for r in result['rows']}
    assert set(rows) == {(('good', ), (1.0, )), (('poor', ), (1.0, )),
                         (('good', 'poor'), (1.0, 1.0)), (('good', 'poor'), (1.0, 2.0)),
                         (('good', 'poor'), (2.0, 1.0))}
    assert rows[('good', ), (1.0, )]['dice_at_half'] > rows[('poor', ), (1.0, )]['dice_at_half']
    # 'poor' (0.55 on bones, noise up to 0.6 elsewhere) cannot be thresholded clean
    assert result['chosen']['models'][0] == 'good'
    assert result['chosen']['dice_tuned'] == max(r['dice_tuned'] for r in result['rows'])


def test_fold_ensemble_csv_equals_averaging_the_float_maps(data, tmp_path):
    """The submission step's vote (w_m per fold dump) against fold means, then model means."""
    labels = load_labels(data, 'train/DCM', 'train/outputs_json')
    gen = torch.Generator().manual_seed(3)
    test: dict[str, list[ProbDump]] = {}
    for model, strength in (('a', 0.8), ('b', 0.6)):
        test[model] = []
        for fold in (0, 1, 2):  # three fold models, each with its own noise
            folder = tmp_path / model / f'fold{fold}'
            entries = []
            for name, info in labels.items():
                g = torch.from_numpy(gt_masks(info))
                probs = torch.where(g, strength, 0.0) + torch.rand(g.shape, generator=gen) * 0.4
                entries.append((name, save_probs(folder, name, probs)))
            write_index(folder, CLASSES, 'uint8', 1.0, entries)
            test[model].append(ProbDump(folder))
    thresholds = tmp_path / 'thresholds.json'
    thresholds.write_text(json.dumps({'thresholds': {c: 0.5 for c in CLASSES}}))
    weights = {'a': 2.0, 'b': 1.0}
    out = tmp_path / 'submission.csv'
    load_tool('ensemble').main([*(str(p.folder) for m in test for p in test[m]), '--weights',
                                *(f'{weights[m]:g}' for m in test for _ in test[m]),
                                '--thresholds', str(thresholds), '--out', str(out),
                                '--workers', '0'])
    rows = []
    for name in test['a'][0].names:
        per_model = {m: sum(p.load(name) for p in test[m]) / len(test[m]) for m in test}
        mean = sum(weights[m] * per_model[m] for m in test) / sum(weights.values())
        rows.append((name, [rle_encode(mask.numpy()) for mask in mean > 0.5]))
    write_submission(tmp_path / 'float.csv', rows)
    assert out.read_bytes() == (tmp_path / 'float.csv').read_bytes()
    assert out.read_text().count(',\n') < 29 * len(labels)  # some masks are not empty


def test_tiny_recipe_runs_end_to_end_and_a_rerun_does_nothing(data, tmp_path, capsys):
    path = write_recipe(tmp_path / 'r.py', data, tmp_path / 'w')
    text = path.read_text().replace("    b=dict(config", "    # b=dict(config")
    path.write_text(text.replace('max_size=2', 'max_size=1'))
    tool = load_tool('run_recipe')
    tool.main([str(path)])
    out = capsys.readouterr().out
    assert '10 of 10 steps ran' in out
    selection = json.loads((tmp_path / 'w' / 'select' / 'selection.json').read_text())
    assert selection['chosen']['models'] == ['a'] and selection['images'] == 12
    assert (tmp_path / 'w' / 'report.html').read_text().count('<tr>') == 1 + 1 + 1 + 29
    csv_lines = (tmp_path / 'w' / 'submission.csv').read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * 29  # 1 test patient: 2 images
    tool.main([str(path)])
    assert '0 of 10 steps ran' in capsys.readouterr().out
    tool.main([str(path), '--dry-run'])
    assert capsys.readouterr().out.splitlines()[0] == '[1/10] train/a/fold0: done'


FAKE_SBATCH = """#!/usr/bin/env bash
# records each submission as a JSON line and answers a job id, as sbatch --parsable does
n=$(( $(wc -l < "{log}" 2>/dev/null || echo 0) + 100 ))
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "{log}"
echo "$n;cluster"
"""


def test_slurm_launcher_submits_the_job_graph_and_skips_what_is_done(data, tmp_path,
                                                                     monkeypatch, capsys):
    bin_dir, log = tmp_path / 'bin', tmp_path / 'sbatch.jsonl'
    bin_dir.mkdir()
    (bin_dir / 'sbatch').write_text(FAKE_SBATCH.format(log=log))
    (bin_dir / 'sbatch').chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}:{__import__("os").environ["PATH"]}')
    path = write_recipe(tmp_path / 'r.py', data, tmp_path / 'w')
    tool = load_tool('run_recipe')
    tool.main([str(path), '--launcher', 'slurm', '--partition', 'gpu'])
    assert '17 of 17 steps submitted' in capsys.readouterr().out
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    jobs = {}
    for i, argv in enumerate(calls):
        options = dict(a.lstrip('-').split('=', 1) for a in argv[1:-1])
        jobs[options['job-name']] = dict(id=str(100 + i), **options, script=argv[-1])
    assert argv[0] == '--parsable' and list(jobs)[:4] == [
        'train/a/fold0', 'train/a/fold1', 'train/b/fold0', 'train/b/fold1']

    def after(name: str) -> set[str]:
        found = jobs[name].get('dependency', 'afterok:').split(':')[1:]
        return {n for n, j in jobs.items() if j['id'] in found}

    assert after('train/a/fold0') == set() and jobs['train/a/fold0']['gres'] == 'gpu:1'
    assert jobs['train/a/fold0']['partition'] == 'gpu'
    assert after('oof/b/fold1') == {'train/b/fold1'}
    assert after('pool/a') == {'oof/a/fold0', 'oof/a/fold1'}
    assert after('select') == {'pool/a', 'pool/b'} and 'gres' not in jobs['select']
    assert after('submission') == {'select', *(f'test/{m}/fold{k}' for m in 'ab' for k in '01')}
    script = Path(jobs['oof/a/fold0']['script']).read_text()
    assert f'run_recipe.py {path} --only oof/a/fold0' in script
    # a resubmission after the training steps finished submits only the rest
    steps = build_plan(load_recipe(path), ROOT / 'tools')
    fake_run(steps, [])
    execute(load_recipe(path), steps, only=['train/*'], echo=lambda line: None)
    log.unlink()
    tool.main([str(path), '--launcher', 'slurm'])
    assert '13 of 17 steps submitted' in capsys.readouterr().out
    first = json.loads(log.read_text().splitlines()[0])
    assert '--job-name=oof/a/fold0' in first and not any('dependency' in a for a in first)


def test_a_second_stage_takes_its_boxes_from_the_same_fold_of_its_first_stage(data, tmp_path):
    path = write_recipe(tmp_path / 'r.py', data, tmp_path / 'w')
    wrist = str(ROOT / 'configs' / 'wrist_tiny_cpu_handbone.py')
    recipe = load_recipe(path, {'models.w': dict(config=wrist, cfg_options=SMALL,
                                                 boxes_from='a')})
    steps = {s.name: s for s in build_plan(recipe, ROOT / 'tools')}
    assert steps['oof/w/fold1'].deps == ['train/w/fold1', 'oof/a/fold1']
    assert steps['test/w/fold0'].deps == ['train/w/fold0', 'test/a/fold0']
    names = list(steps)
    assert names.index('test/a/fold1') < names.index('oof/w/fold0')  # first stages first
    argv = steps['oof/w/fold1'].command()
    assert argv[argv.index('--roi-from') + 1] == str(tmp_path / 'w' / 'a' / 'fold1' / 'oof'
                                                     / 'probs')
    # the wrist model votes in the candidates like any model (on the classes it covers)
    assert ('a', 'w') in recipe.candidates
    with pytest.raises(RecipeError, match=r"models\.w\.boxes_from: 'w' is not a first-stage "
                                          r"model of the recipe \(\['a', 'b'\]\)"):
        load_recipe(path, {'models.w': dict(config=wrist, boxes_from='w')})
    with pytest.raises(RecipeError, match=r'models\.w\.boxes_from: .* is not a second stage'):
        load_recipe(path, {'models.w': dict(config=TINY, boxes_from='a')})


@pytest.mark.parametrize('name, steps', [('demo_cpu', 2 * 3 * 3 + 2 + 3),
                                         ('leaderboard', 4 * 5 * 3 + 4 + 3)])
def test_shipped_recipes_plan(data, tmp_path, name, steps):
    recipe = load_recipe(ROOT / 'recipes' / f'{name}.py',
                         {'data_root': str(data), 'work_dir': str(tmp_path)})
    plan = build_plan(recipe, ROOT / 'tools')
    assert len(plan) == steps
    assert all(s.why == 'no stamp' or s.why.startswith('after ')
               for s in status(recipe, plan))


def test_slurm_scripts_keep_mmseg_command_lines():
    import os
    import subprocess
    env = dict(os.environ, DRY_RUN='1', GPUS='8', GPUS_PER_NODE='4', PYTHON='py')
    train = subprocess.run(['bash', str(ROOT / 'tools' / 'slurm_train.sh'), 'gpu', 'hb',
                            'configs/x.py', '--work-dir', 'w'], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert train == ['srun', '-p', 'gpu', '--job-name=hb', '--gres=gpu:4', '--ntasks=8',
                     '--ntasks-per-node=4', '--cpus-per-task=5', '--kill-on-bad-exit=1', 'py',
                     '-u', str(ROOT / 'tools' / 'train.py'), 'configs/x.py', '--work-dir', 'w',
                     '--launcher', 'slurm']
    test = subprocess.run(['bash', str(ROOT / 'tools' / 'slurm_test.sh'), 'gpu', 'hb',
                           'configs/x.py', 'x.pth', '--tta'], env=env, capture_output=True,
                          text=True, check=True).stdout.split()
    assert test[-6:] == [str(ROOT / 'tools' / 'test.py'), 'configs/x.py', 'x.pth', '--tta',
                         '--launcher', 'slurm']


def test_parallel_folds_train_side_by_side_one_gpu_each(data, tmp_path):
    path = write_recipe(tmp_path / 'r.py', data, tmp_path / 'w')
    recipe = load_recipe(path)
    steps = build_plan(recipe, ROOT / 'tools')
    ran: list[str] = []
    fake_run(steps, ran)
    for step in steps[:4]:  # the 4 trainings: each writes its GPU and start/end times
        out = tmp_path / step.name.replace('/', '_')
        step.function = None
        step.command = (lambda out=out: ['sh', '-c', f'date +%s.%N > {out}; echo '
                                         f'$CUDA_VISIBLE_DEVICES >> {out}; sleep 1; '
                                         f'date +%s.%N >> {out}'])
    done = execute(recipe, steps, parallel_folds=2, echo=lambda line: None)
    assert done[:4] == [s.name for s in steps[:4]] and len(done) == 17
    runs = [(tmp_path / s.name.replace('/', '_')).read_text().split() for s in steps[:4]]
    assert [r[1] for r in runs] == ['0', '1', '0', '1']
    # two at a time: the second of each pair started before the first ended
    assert float(runs[1][0]) < float(runs[0][2]) and float(runs[3][0]) < float(runs[2][2])
    assert float(runs[2][0]) >= float(runs[1][2]) - 0.05
