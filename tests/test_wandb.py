"""``use_wandb=True``: a short training logs its scalars to an offline Weights & Biases run."""
import json
from pathlib import Path

import pytest
import wandb
from test_train_folds import options

from helpers import ROOT, load_tool

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs stay on disk under tmp_path; wandb's settings, cache and staging too."""
    monkeypatch.setenv('WANDB_MODE', 'offline')
    for var in ('WANDB_DIR', 'WANDB_CONFIG_DIR', 'WANDB_CACHE_DIR', 'WANDB_DATA_DIR'):
        monkeypatch.setenv(var, str(tmp_path / 'wandb-home'))
    # Started where other code lies: the stock backend would upload it (from a checkout, the
    # whole .venv); the run's code artifact must hold the package only.
    (tmp_path / 'unrelated_script.py').write_text('print("not handbone")\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def train(data: Path, work: Path, *extra: str, config: str = CONFIG) -> None:
    # A visualizer of its own: mmengine hands an existing visualizer of the same name (mmseg
    # calls it 'visualizer') to every later runner of the process, backends and all.
    load_tool('train').main([config, '--work-dir', str(work), '--cfg-options',
                             *options(data), 'default_hooks.logger.interval=1',
                             f'visualizer.name={work}', *extra])


def test_switch_logs_scalars_to_an_offline_run(tiny_root, offline):
    work = offline / 'work'
    train(tiny_root, work, 'use_wandb=True', 'wandb_init_kwargs.name=fold0')
    wandb.teardown()  # the wandb service writes the run file behind the run; this flushes it
    runs = list(work.rglob('wandb/offline-run-*'))
    assert len(runs) == 1
    records = next(runs[0].glob('*.wandb')).read_bytes()
    # every scalar of the local log (losses, lr, mDice ...) is in the run's history records
    local = next(work.rglob('vis_data/scalars.json'))
    keys = {k for line in local.read_text().splitlines() for k in json.loads(line)}
    assert {'loss', 'decode.loss_dice', 'mDice'} <= keys
    assert all(k.encode() in records for k in keys)
    assert b'fold0' in records  # wandb_init_kwargs reach wandb.init


def test_code_artifact_holds_the_package_only(tiny_root, offline):
    work = offline / 'work'
    train(tiny_root, work, 'use_wandb=True')
    wandb.teardown()
    staged = {p.name for p in (offline / 'wandb-home').rglob('*.py')}
    records = next(work.rglob('wandb/offline-run-*/*.wandb')).read_bytes()
    # the artifact's manifest names each file by its path inside the package
    assert b'functional/losses.py' in records and b'models/segmentors.py' in records
    assert b'unrelated_script.py' not in records and 'unrelated_script.py' not in staged


def test_code_logging_can_be_switched_off(tiny_root, offline):
    config = offline / 'no_code.py'  # the backend named in a config, as users would
    config.write_text(f"_base_ = ['{CONFIG}']\n"
                      "visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
                      "dict(type='HandBoneWandbVisBackend', log_code=False)])\n")
    work = offline / 'work'
    train(tiny_root, work, 'use_wandb=True', config=str(config))
    wandb.teardown()
    records = next(work.rglob('wandb/offline-run-*/*.wandb')).read_bytes()
    assert b'loss_dice' in records and b'functional/losses.py' not in records


def test_no_wandb_without_the_switch(tiny_root, offline):
    train(tiny_root, offline / 'work')
    assert not list(offline.rglob('wandb*'))
