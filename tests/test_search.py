"""tools/search.py: an Optuna study of real training runs that prunes, resumes and writes the
best trial as a config that tools/train.py takes."""
import ast
import math
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from mmengine.runner import Runner
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from handbone_mmseg.apis import load_config
from handbone_mmseg.cli import run_tool
from handbone_mmseg.search import (
    OptunaPruningHook,
    SpaceError,
    best_config_text,
    best_trial,
    check_space,
    importance_lines,
    load_space,
    run_study,
    short_names,
    trials_table,
)

from helpers import ROOT, load_tool

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
SPACE = """space = {
    'optim_wrapper.optimizer.lr': dict(type='float', low=1e-3, high=1e-2, log=True),
    'crop_size': dict(type='categorical', choices=[(48, 48), (64, 64)]),
}
"""


def options(data: Path, val_interval: int = 1) -> dict:
    """Two 64-pixel iterations, a validation of the 4 fold-0 images every ``val_interval``."""
    return {'data_root': str(data), 'train_cfg.max_iters': 2,
            'train_cfg.val_interval': val_interval, 'train_scale': (64, 64),
            'test_scale': (64, 64)}


def as_args(opts: dict) -> list[str]:
    return [f'{k}={v}'.replace(' ', '') for k, v in opts.items()]


@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / 'space.py'
    path.write_text(SPACE)
    return path


def test_a_study_resumes_where_it_stopped_and_writes_its_best_config(tiny_root, tmp_path,
                                                                     space, capsys):
    study_dir, opts = tmp_path / 'study', options(tiny_root, val_interval=2)
    search = load_tool('search')
    assert search.main([CONFIG, '--space', str(space), '--trials', '2', '--study',
                        str(study_dir), '--seed', '0', '--cfg-options', *as_args(opts)]) == 0
    out = capsys.readouterr().out
    table = out[out.index('#  state'):].splitlines()
    assert table[0].split() == ['#', 'state', 'mDice', 'iteration', 'lr', 'crop_size']
    assert [row.split()[:2] for row in table[2:4]] == [['0', 'COMPLETE'], ['1', 'COMPLETE']]
    assert 'lr: optim_wrapper.optimizer.lr' in out and 'parameter importances' in out

    # the search is killed while trial 2 trains: it stays RUNNING, its heartbeat goes stale
    storage = f'sqlite:///{study_dir}/study.db'
    study = optuna.load_study(study_name='study', storage=storage)
    killed = study.ask({k: p.distribution() for k, p in load_space(space).items()})
    study._storage.record_heartbeat(killed._trial_id)
    time.sleep(2.2)  # sqlite's clock has whole seconds: 2 > the grace period of 1
    # the same search again, for 3 trials in all: trial 2 fails, its values run as trial 3
    run_study(CONFIG, space, study_dir, 3, cfg_options=opts, seed=0, heartbeat=(1, 1))
    trials = optuna.load_study(study_name='study', storage=storage).get_trials()
    assert [(t.number, t.state) for t in trials] == [
        (0, TrialState.COMPLETE), (1, TrialState.COMPLETE), (2, TrialState.FAIL),
        (3, TrialState.COMPLETE)]
    assert trials[3].params == trials[2].params and trials[3].system_attrs['failed_trial'] == 2
    # every trial trained in its own work dir; only the best trial keeps its checkpoints
    assert {p.name for p in study_dir.glob('trial_*')} == {'trial_0', 'trial_1', 'trial_3'}
    best = best_trial(study)
    assert {p.parent.name for p in study_dir.glob('trial_*/*.pth')} == {f'trial_{best.number}'}
    for n in (0, 1, 3):  # each with its own log and scalars (one validation, at the end)
        assert len(list(study_dir.glob(f'trial_{n}/*/*.log'))) == 1
        (scalars,) = study_dir.glob(f'trial_{n}/*/vis_data/scalars.json')
        assert scalars.read_text().count('"mDice"') == 1
    # a finished study runs nothing more
    run_study(CONFIG, space, study_dir, 3, cfg_options=opts)
    assert len(study.get_trials()) == 4

    # best_config.py is the best trial: what load_config makes of the config, the search's
    # options and the trial's values
    params = {'optim_wrapper.optimizer.lr': best.params['optim_wrapper.optimizer.lr'],
              'crop_size': ast.literal_eval(best.params['crop_size'])}
    child = load_config(study_dir / 'best_config.py', work_dir=str(tmp_path / 'w'))
    assert child.to_dict() == load_config(CONFIG, {**opts, **params},
                                          work_dir=str(tmp_path / 'w')).to_dict()
    assert child.optim_wrapper.optimizer.lr == params['optim_wrapper.optimizer.lr']
    assert child.model.data_preprocessor.size == params['crop_size']
    assert f'trial {best.number} of study' in (study_dir / 'best_config.py').read_text()


def test_a_pruned_trial_stops_its_run_at_the_validation_that_cut_it(tiny_root, tmp_path, space):
    study_dir = tmp_path / 'study'
    # a pruner that cuts every trial at its first report (mDice is never above 1.1)
    study = run_study(CONFIG, space, study_dir, 1, cfg_options=options(tiny_root),
                      pruner=optuna.pruners.ThresholdPruner(lower=1.1))
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]  # reported at iteration 1 of 2, then stopped
    log = next(study_dir.glob('trial_0/*/*.log')).read_text()
    assert 'Optuna pruned trial 0 at iteration 1' in log
    assert log.count('per-class Dice over') == 1  # the validation at iteration 2 never ran
    assert not (study_dir / 'trial_0' / 'iter_2.pth').exists()
    assert not (study_dir / 'best_config.py').exists()  # no complete trial: nothing to write
    assert 'pruned at 1' in trials_table(study)


@pytest.mark.parametrize('stop', [KeyboardInterrupt, SystemExit])
def test_an_interrupted_trial_is_queued_again(tiny_root, tmp_path, space, monkeypatch, stop):
    """Ctrl-C (Optuna fails the trial) and SIGTERM's SystemExit (Optuna leaves it running)."""
    def interrupted(self):
        raise stop()

    monkeypatch.setattr(Runner, 'train', interrupted)
    study_dir = tmp_path / 'study'
    with pytest.raises(stop):
        run_study(CONFIG, space, study_dir, 2, cfg_options=options(tiny_root))
    study = optuna.load_study(study_name='study', storage=f'sqlite:///{study_dir}/study.db')
    first, again = study.get_trials()
    assert (first.state, first.user_attrs['error']) == (TrialState.FAIL, 'interrupted')
    assert again.state == TrialState.WAITING and again.params == first.params


def test_the_hand_set_values_can_be_the_first_trial(tiny_root, tmp_path, space, monkeypatch):
    monkeypatch.setattr(Runner, 'train', lambda self: None)  # no validation: the trial fails
    study = run_study(CONFIG, space, tmp_path / 's', 1, enqueue_config=True,
                      cfg_options=options(tiny_root))
    (trial,) = study.get_trials()
    # the tiny config's lr 3e-3 is in the range; its crop (256, 256) is not a choice
    assert trial.params['optim_wrapper.optimizer.lr'] == 3e-3
    assert trial.user_attrs['from_config'] is True
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs['error'] == 'RuntimeError: trial 0: the run never validated'
    # the same folder with another space is refused before anything runs
    space.write_text(SPACE.replace('1e-2', '2e-2'))
    with pytest.raises(SpaceError, match=r"space\.py: optim_wrapper\.optimizer\.lr: study 's' "
                                         'searched another space'):
        run_study(CONFIG, space, tmp_path / 's', 2, cfg_options=options(tiny_root))
    assert len(study.get_trials()) == 1


# what the config refuses: keys (load_config's --cfg-options rules) and values (switches)
CONFIG_ERRORS = [
    ("space = {'optim_wrapper.optimizer.lrr': dict(type='float', low=1e-3, high=1e-2)}",
     "optim_wrapper.optimizer.lrr: AdamW takes no argument 'lrr' (did you mean "
     'optim_wrapper.optimizer.lr?)'),
    ("space = {'train_pipeline.4.prob': dict(type='float', low=0.0, high=1.0)}",
     'train_pipeline.4.prob: train_pipeline is a variable that the config copied into what '
     'uses it when it was parsed: setting it changes nothing a run reads (did you mean '
     'train_dataloader.dataset.pipeline.4.prob?)'),
    ("space = {'train_dataloader.dataset.pipeline.3.prob': dict(type='float', low=0, high=1)}",
     "train_dataloader.dataset.pipeline.3.prob: RandomCrop takes no argument 'prob'"),
    ("space = {'data_root': dict(type='categorical', choices=['a'])}",
     'data_root: also set by --cfg-options; search it or fix it, not both'),
]
# what the space file itself gets wrong
FORM_ERRORS = [
    ("space = {'optim_wrapper.optimizer.lr': dict(type='float', low=0, high=1, log=True)}",
     'optim_wrapper.optimizer.lr: a log range needs low > 0, got low=0'),
    ("space = {'optim_wrapper.optimizer.lr': dict(type='float', lo=0.1, high=1)}",
     "optim_wrapper.optimizer.lr: a float range takes no 'lo' (did you mean 'low'?)"),
    ("space = {'train_dataloader.batch_size': dict(type='int', low=1, high=2.5)}",
     'train_dataloader.batch_size: high must be an integer, got 2.5'),
    ("space = {'optim_wrapper.optimizer.lr': dict(type='uniform', low=0.1, high=1)}",
     "optim_wrapper.optimizer.lr: type must be one of float, int, categorical, got 'uniform'"),
    ("space = {'crop_size': dict(type='categorical', choices=[])}",
     'crop_size: choices must be a non-empty list, got []'),
    ("space = {'crop_size': dict(type='categorical', choices=[(64, 64), (64, 64)])}",
     'crop_size: choices repeat a value: [(64, 64), (64, 64)]'),
    ("space = {'lr': dict(type='float', low=0.1, high=0.2, step=0.01, log=True)}",
     'lr: step and log=True cannot be combined (Optuna samples one or the other)'),
    ("space = {'a..b': dict(type='float', low=0.1, high=0.2)}",
     "'a..b': a key must be a dotted config key such as 'optim_wrapper.optimizer.lr'"),
    ('spaces = {}', 'needs a variable space = {CONFIG_KEY: dict(type=...), ...}'),
]


@pytest.mark.parametrize('text, message', [
    ("space = {'optim_wrapper.optimiser.lr': dict(type='float', low=1e-3, high=1e-2)}",
     f'optim_wrapper.optimiser.lr: no such key in {CONFIG} (did you mean '
     'optim_wrapper.optimizer.lr?)'),
    ("space = {'crop_size': dict(type='categorical', choices=[(64, 64), (0, 64)])}",
     'crop_size=(0, 64): crop_size must be two positive integers (height, width), got (0, 64)'),
    ("space = {'optim_wrapper.optimizer.lr': dict(type='float', low=1e-2, high=1e-3)}",
     'optim_wrapper.optimizer.lr: low must not exceed high, got low=0.01 high=0.001'),
])
def test_a_bad_space_file_is_one_line_before_any_trial(tiny_root, tmp_path, capsys, text,
                                                       message):
    path = tmp_path / 'bad_space.py'
    path.write_text(text + '\n')
    study_dir = tmp_path / 'study'
    argv = [CONFIG, '--space', str(path), '--trials', '1', '--study', str(study_dir),
            '--cfg-options', *as_args(options(tiny_root))]
    assert run_tool(lambda: load_tool('search').main(argv)) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f'error: {path}: {message}'
    assert not study_dir.exists()  # nothing ran, no study was made


@pytest.mark.parametrize('text, message', CONFIG_ERRORS)
def test_a_key_or_value_the_config_refuses_names_the_space_file_and_key(tiny_root, tmp_path,
                                                                        text, message):
    path = tmp_path / 'bad_space.py'
    path.write_text(text + '\n')
    with pytest.raises(SpaceError) as error:
        check_space(load_space(path), CONFIG, options(tiny_root), str(path))
    assert str(error.value) == f'{path}: {message}'


@pytest.mark.parametrize('text, message', FORM_ERRORS)
def test_a_malformed_range_names_the_space_file_and_key(tmp_path, text, message):
    path = tmp_path / 'bad_space.py'
    path.write_text(text + '\n')
    with pytest.raises(SpaceError) as error:
        load_space(path)
    assert str(error.value) == f'{path}: {message}'


def test_a_missing_space_file_and_an_unknown_option_are_refused(tmp_path, capsys):
    with pytest.raises(SpaceError, match=r'nope\.py: space file not found'):
        load_space(tmp_path / 'nope.py')
    with pytest.raises(SystemExit) as stopped:
        load_tool('search').main([CONFIG, '--space', 'x.py', '--trials', '1', '--study',
                                  str(tmp_path), '--cfg-options', 'data_rot=x'])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        f'error: --cfg-options data_rot: no such key in {CONFIG}')


def test_best_config_is_load_config_of_the_config_and_the_overrides(tmp_path, tiny_root):
    """List items (losses, a pipeline step), a data variable and a switch, written as code."""
    overrides = {'data_root': str(tiny_root), 'n_folds': 4,
                 'optim_wrapper.optimizer.lr': 0.005,
                 'model.decode_head.loss_decode.0.loss_weight': 0.7,
                 'model.decode_head.loss_decode.1.loss_weight': 0.5,
                 'train_dataloader.dataset.pipeline.4.prob': 0.25, 'crop_size': (48, 48)}
    child = tmp_path / 'best_config.py'
    child.write_text(best_config_text(CONFIG, overrides))
    work = str(tmp_path / 'w')
    loaded = load_config(child, work_dir=work)
    assert loaded.to_dict() == load_config(CONFIG, overrides, work_dir=work).to_dict()
    losses = loaded.model.decode_head.loss_decode
    assert [(loss.type, loss.loss_weight) for loss in losses] == [
        ('MultiLabelBCELoss', 0.7), ('MultiLabelDiceLoss', 0.5)]
    assert loaded.train_dataloader.dataset.pipeline[4] == dict(
        type='RandomFlip', prob=0.25, direction='horizontal')
    assert loaded.val_dataloader.dataset.n_folds == 4
    assert loaded.train_dataloader.dataset.pipeline[3].crop_size == (48, 48)


def _study_with_results() -> optuna.Study:
    study = optuna.create_study(direction='maximize')
    dists = {'optim_wrapper.optimizer.lr': FloatDistribution(1e-4, 1e-2, log=True),
             'crop_size': CategoricalDistribution(('(48, 48)', '(64, 64)'))}
    for lr, crop, value in ((1e-3, '(48, 48)', 0.5), (5e-3, '(64, 64)', 0.7),
                            (2e-3, '(48, 48)', 0.55)):
        study.add_trial(create_trial(params={'optim_wrapper.optimizer.lr': lr,
                                             'crop_size': crop}, distributions=dists,
                                     value=value, user_attrs={'best_iter': 4}))
    study.add_trial(create_trial(params={'optim_wrapper.optimizer.lr': 1e-4,
                                         'crop_size': '(48, 48)'}, distributions=dists,
                                 state=TrialState.PRUNED, intermediate_values={2: 0.1}))
    study.add_trial(create_trial(params={'optim_wrapper.optimizer.lr': 1e-2,
                                         'crop_size': '(64, 64)'}, distributions=dists,
                                 state=TrialState.FAIL, user_attrs={'error': 'RuntimeError: x'}))
    return study


def test_trials_table_and_importances():
    study = _study_with_results()
    assert trials_table(study).splitlines() == [
        '#  state     mDice   iteration    lr      crop_size',
        '-  --------  ------  -----------  ------  ---------',
        '0  COMPLETE  0.5000  4            0.001   (48, 48)',
        '1  COMPLETE  0.7000  4            0.005   (64, 64)',
        '2  COMPLETE  0.5500  4            0.002   (48, 48)',
        '3  PRUNED    0.1000  pruned at 2  0.0001  (48, 48)',
        '4  FAIL                           0.01    (64, 64)',
        'lr: optim_wrapper.optimizer.lr',
        'trial 4 failed: RuntimeError: x',
    ]
    assert best_trial(study).number == 1
    lines = importance_lines(study)
    assert lines[0].startswith('parameter importances')
    shares = {line.split()[1]: float(line.split()[0]) for line in lines[1:]}
    assert set(shares) == {'optim_wrapper.optimizer.lr', 'crop_size'}
    assert math.isclose(sum(shares.values()), 1.0, abs_tol=2e-3)
    # fewer than two complete trials: said, not raised
    one = optuna.create_study(direction='maximize')
    one.add_trial(study.trials[0])
    assert importance_lines(one) == [
        'parameter importances: not available (need 2 complete trials, have 1)']


def test_short_names_are_the_shortest_unique_tails():
    keys = ['optim_wrapper.optimizer.lr', 'model.decode_head.loss_decode.0.loss_weight',
            'model.decode_head.loss_decode.1.loss_weight', 'crop_size', 'a.crop_size']
    assert short_names(keys) == {
        'optim_wrapper.optimizer.lr': 'lr',
        'model.decode_head.loss_decode.0.loss_weight': '0.loss_weight',
        'model.decode_head.loss_decode.1.loss_weight': '1.loss_weight',
        'crop_size': 'crop_size', 'a.crop_size': 'a.crop_size'}


class StubTrial:
    """An Optuna trial that prunes from its ``prune_from``-th report on."""

    number = 7

    def __init__(self, prune_from: int) -> None:
        self.reports: list[tuple[float, int]] = []
        self.prune_from = prune_from

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return len(self.reports) >= self.prune_from


def _runner(iteration: int) -> SimpleNamespace:
    return SimpleNamespace(iter=iteration, train_loop=SimpleNamespace(stop_training=False),
                           logger=SimpleNamespace(info=lambda message: None))


def test_the_hook_reports_each_validation_and_stops_the_loop_when_pruned():
    trial = StubTrial(prune_from=3)
    hook = OptunaPruningHook(trial)
    runners = [_runner(i) for i in (10, 20, 30)]
    for runner, value in zip(runners, (0.5, 0.7, 0.7)):
        hook.after_val_epoch(runner, {'mDice': value, 'other': 1.0})
    assert trial.reports == [(0.5, 10), (0.7, 20), (0.7, 30)]
    assert [r.train_loop.stop_training for r in runners] == [False, False, True]
    assert hook.pruned_at == 30
    assert hook.best == (0.7, 20)  # the first of equal values, as the checkpoint hook keeps
    with pytest.raises(ValueError, match=r"gave no 'mDice' \(got \['mIoU'\]\)"):
        hook.after_val_epoch(_runner(40), {'mIoU': 0.3})


def test_the_demo_space_fits_the_demo_config(tiny_root):
    path = ROOT / 'configs' / 'search' / 'demo_space.py'
    space = load_space(path)
    assert set(space) >= {'optim_wrapper.optimizer.lr', 'crop_size',
                          'train_dataloader.dataset.pipeline.4.prob'}
    check_space(space, CONFIG, {'data_root': str(tiny_root)}, str(path))


def test_a_storage_that_cannot_be_opened_is_one_line_without_its_password(tmp_path):
    from handbone_mmseg.search import open_study
    with pytest.raises(ValueError) as error:
        open_study(tmp_path, 'postgresql://user:hunter2@127.0.0.1:1/db')
    message = str(error.value)
    assert message.startswith('--storage postgresql://user:***@127.0.0.1:1/db: ')
    assert 'hunter2' not in message and '\n' not in message


@pytest.mark.parametrize('url', ['postgresql:/user:hunter2@host/db',
                                 'postgresql://user:hun@ter2x@127.0.0.1:1/db',
                                 'nosuchdb://user:hunter2@host/db'])
def test_a_malformed_storage_url_never_shows_its_password(tmp_path, url):
    """Before: SQLAlchemy's message quoted the whole URL it could not parse."""
    from handbone_mmseg.search import open_study
    with pytest.raises(ValueError) as error:
        open_study(tmp_path, url)
    assert 'hunter2' not in str(error.value) and 'ter2x' not in str(error.value)
