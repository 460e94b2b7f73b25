"""The GPU bundle (benchmarks/gpu_bundle.py) and the one-call GPU run (benchmarks/gpu_run.sh)."""
import configparser
import importlib.util
import os
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from helpers import ROOT

spec = importlib.util.spec_from_file_location('gpu_bundle', ROOT / 'benchmarks' / 'gpu_bundle.py')
gpu_bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_bundle)


def project_requirements() -> list[Requirement]:
    """requirements.txt and setup.cfg's install_requires."""
    lines = (ROOT / 'requirements.txt').read_text().splitlines()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    lines += cfg['options']['install_requires'].splitlines()
    return [Requirement(line) for line in (raw.split('#')[0].strip() for raw in lines) if line]


def test_bundle_covers_every_requirement_the_gpu_machine_lacks():
    # Walk the stack's requirements as installed here; stop at what the GPU image has.
    covered = set(gpu_bundle.ON_GPU) | {gpu_bundle.canonical(n) for n in gpu_bundle.NOT_BUNDLED}
    required_by = {'requirements.txt/setup.cfg': [r.name for r in project_requirements()]}
    todo, seen = list(required_by['requirements.txt/setup.cfg']), set()
    while todo:
        name = gpu_bundle.canonical(todo.pop())
        if name in seen or name in covered:
            continue
        seen.add(name)
        requires = [Requirement(r) for r in metadata.requires(name) or []]
        required_by[name] = [r.name for r in requires
                             if r.marker is None or r.marker.evaluate(gpu_bundle.GPU_MARKERS)]
        todo += required_by[name]
    assert {'mmsegmentation', 'mmengine', 'mmcv', 'yapf', 'prettytable'} <= seen
    assert gpu_bundle.missing_requirements(required_by) == []


def test_bundle_pins_agree_with_requirements_txt():
    pins = {gpu_bundle.canonical(r.name): str(r.specifier) for r in project_requirements()}
    for name, version in {**gpu_bundle.WHEELS, **gpu_bundle.SDISTS, **gpu_bundle.BUILT}.items():
        if pins.get(name, '').startswith('=='):
            assert pins[name] == f'=={version}', name


def test_missing_requirements_names_the_gap():
    assert gpu_bundle.missing_requirements({'foo.whl': ['yapf', 'NumPy', 'left-pad']}) == \
        ['foo.whl needs left-pad']


@pytest.mark.parametrize('wheel, on_312, on_311', [
    ('pycocotools-2.0.11-cp312-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl', True, False),
    ('pycocotools-2.0.11-cp311-cp311-manylinux_2_17_x86_64.whl', False, True),
    ('wcwidth-0.9.4-cp310-abi3-manylinux2014_x86_64.whl', True, True),
    ('yapf-0.43.0-py3-none-any.whl', True, True),
    ('regex-2026.11.19-cp312-cp312-macosx_11_0_arm64.whl', False, False),
])
def test_installs_on(wheel, on_312, on_311):
    assert gpu_bundle.installs_on(Path(wheel), '3.12') is on_312
    assert gpu_bundle.installs_on(Path(wheel), '3.11') is on_311


def test_wheel_requirements_drop_extras_and_other_pythons(tmp_path):
    wheel = tmp_path / 'demo-1.0-py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w') as zf:
        zf.writestr('demo-1.0.dist-info/METADATA', '\n'.join([
            'Metadata-Version: 2.1', 'Name: demo', 'Version: 1.0',
            'Requires-Dist: platformdirs >=3.5.1',
            'Requires-Dist: tomli >=2.0.1 ; python_version < "3.11"',
            'Requires-Dist: regex; sys_platform == "win32"',
            'Requires-Dist: pytest; extra == "tests"', '', '']))
    assert gpu_bundle.wheel_requirements(wheel) == ['platformdirs']


def test_size_check_fails_above_the_limit_with_the_biggest_file(tmp_path, capsys):
    (tmp_path / 'big.whl').open('wb').truncate(61 * 2**20)  # sparse: no disk used
    (tmp_path / 'small.whl').write_bytes(b'x' * 1024)
    with pytest.raises(ValueError, match=r'61\.0 MiB, over the 60 MiB limit.*big\.whl 61\.0'):
        gpu_bundle.check_size(tmp_path)
    assert gpu_bundle.main(['--check-only', '--dest', str(tmp_path)]) == 1
    assert 'over the 60 MiB limit' in capsys.readouterr().err
    assert gpu_bundle.check_size(tmp_path, limit_mib=62) == pytest.approx(61, abs=0.01)


def test_contents_check_lists_every_missing_file(tmp_path):
    with pytest.raises(ValueError) as err:
        gpu_bundle.check_contents(tmp_path)
    message = str(err.value)
    assert 'no wheel of mmengine==0.10.7 for Python 3.12' in message
    assert 'no wheel of pycocotools==2.0.11 for Python 3.11' in message
    assert 'no source archive mmcv-2.1.0.tar.gz' in message


@pytest.mark.parametrize('script', ['gpu_run.sh', 'gpu_smoke.sh'])
def test_scripts_parse(script):
    run = subprocess.run(['bash', '-n', str(ROOT / 'benchmarks' / script)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


# The whole GPU script on the CPU, from the bundle (gpu_bundle/, or downloaded afresh), in a
# Python 3.11 venv holding only what the GPU image has (gpu_dryrun/base, made once, about
# 2 minutes). The first run compiles mmcv's ops (about 16 minutes on 2 cores) into
# gpu_dryrun/wheels; later runs reuse that wheel and take about 5 minutes.
@pytest.mark.slow
def test_dry_run_installs_builds_trains_and_resumes_on_two_processes(tmp_path):
    bundle = ROOT / 'gpu_bundle'
    try:
        gpu_bundle.check_contents(bundle)
    except ValueError:
        bundle = tmp_path / 'bundle'
        assert gpu_bundle.main(['--dest', str(bundle)]) == 0
    out = tmp_path / 'out'
    env = dict(os.environ, GPU_RUN_DRY='1', GPU_RUN_BUNDLE=str(bundle), OUT=str(out),
               GPU_RUN_WORK=str(tmp_path / 'work'))
    env.pop('PYTHONPATH', None)
    run = subprocess.run(['bash', str(ROOT / 'benchmarks' / 'gpu_run.sh')], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=3600)
    summary = (out / 'summary.txt').read_text()
    assert run.returncode == 0, summary + run.stdout[-5000:]
    status = {line.split()[0]: line.split()[1] for line in summary.splitlines()[1:]
              if len(line.split()) > 2 and line.split()[2].isdigit()}
    for name in ('env', 'install', 'build', 'import', 'smoke', 'dist-gloo', 'ops', 'report'):
        assert status[name] == 'ok', summary
    assert status['dist-nccl'] == 'skipped'
    assert 'gpu_smoke: CPU' in summary
    ops = (out / 'mmcv_ops.txt').read_text()
    assert 'hrnet_w48_handbone.py: ok' in ops
    assert {p.name for p in out.iterdir()} >= {'gpu_run.log', 'summary.txt', 'mmcv_ops.txt',
                                               'logs.tar.gz'}
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back
