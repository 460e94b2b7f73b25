"""Wheels for the device tool's GPU machine, downloaded here in one command (`make gpu-bundle`).

That machine (Python 3.12, torch 2.11+cu130, no network; /work/shared/STACK.md) has torch,
numpy, OpenCV and matplotlib but not mmengine, mmcv or mmseg, nor a few of their small
dependencies. This writes into one folder (default ``gpu_bundle/``, ignored by git, carried by
``run``):

- the cp312 wheels of ``WHEELS`` (pinned; pure-Python ones are ``py3-none-any``), plus cp311
  wheels of the compiled ones, so that the CPU dry run here (Python 3.11) installs from the
  very same folder;
- the mmcv 2.1.0 source archive: no wheel exists for torch 2.11, so ``gpu_run.sh`` compiles its
  CPU ops there;
- ``requirements.txt``, the pins that ``gpu_run.sh`` installs with ``--no-index --no-deps``.

A prebuilt ``mmcv-2.1.0-cp312-*.whl`` that ``gpu_run.sh`` brought back (about 31 MiB) is kept
when the folder is refilled: the next call installs it instead of compiling.

Every wheel is fetched with ``--no-deps``: pip would otherwise pull torch, numpy and
opencv-python, which the GPU machine has (or has as ``-headless``). Completeness is checked
instead: each bundled wheel's requirements must be bundled, on the GPU machine (``ON_GPU``) or
left out on purpose (``NOT_BUNDLED``). The folder must stay under ``MAX_MIB``: the working
tree and carried paths travel together, 64 MiB at most.

    python benchmarks/gpu_bundle.py [--dest gpu_bundle]
    python benchmarks/gpu_bundle.py --check-only --dest gpu_bundle   # size and contents only
"""
import argparse
import email.parser
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

try:
    from packaging import tags
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
    from packaging.version import Version
except ImportError:  # a bare interpreter: pip carries its own copy
    from pip._vendor.packaging import tags
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# What the plugin needs that the GPU machine lacks, pinned (the versions `make setup` resolved
# here). setuptools, wheel and ninja are there already, in versions nobody has read: mmcv's
# setup.py imports pkg_resources, which setuptools 82 removed, so the build gets its own.
WHEELS: dict[str, str] = {
    'mmengine': '0.10.7',
    'mmsegmentation': '1.2.2',
    'pycocotools': '2.0.11',  # requirements.txt, setup.cfg
    'pydicom': '3.0.2',       # requirements.txt: DICOM input (handbone_mmseg.io.dicom)
    'ftfy': '6.3.1',          # mmseg.utils' CLIP tokenizer, imported by `import mmseg.models`
    'wcwidth': '0.9.4',       # ftfy, prettytable
    'prettytable': '3.18.0',  # mmseg
    'addict': '2.4.0',        # mmengine, mmcv
    'yapf': '0.43.0',         # mmengine, mmcv (config dumps)
    'platformdirs': '4.14.9',  # yapf
    'termcolor': '3.3.0',     # mmengine
    'setuptools': '81.0.0',   # build: >= 77 for torch, < 82 for pkg_resources
    'wheel': '0.48.0',        # build
    'ninja': '1.13.2',        # build: parallel compilation of mmcv's ops
    # fold_strategy='patient_stratified' (StratifiedGroupKFold), the leaderboard recipe's
    'scikit-learn': '1.9.1',
    'joblib': '1.6.0',        # scikit-learn
    'cloudpickle': '3.1.3',  # joblib
    'narwhals': '2.29.0',     # scikit-learn
    'threadpoolctl': '3.8.0',  # scikit-learn
}
# Wheels tied to a CPython ABI: also fetched for the dry run's Python (cp311 here).
COMPILED = ('pycocotools',)
SDISTS: dict[str, str] = {'mmcv': '2.1.0'}
# Pure-Python packages that PyPI has as source only: built into a wheel here, installed there
# with the pins (`import handbone_mmseg.register` imports adamp, which registers AdamP).
BUILT: dict[str, str] = {'adamp': '0.3.0'}
# Python packages on the GPU machine's image, as listed in the device tool's KINDS.md
# (2026-11-17), that this stack needs: their own requirements are that image's business.
ON_GPU = frozenset({
    'torch', 'torchvision', 'timm', 'numpy', 'opencv-python-headless', 'matplotlib', 'scipy',
    'pillow', 'pyyaml', 'packaging', 'rich', 'regex', 'pytest', 'pandas', 'tqdm', 'filelock',
    'huggingface-hub', 'safetensors', 'six', 'python-dateutil', 'pyparsing', 'cycler',
    'kiwisolver', 'fonttools', 'contourpy', 'pygments', 'markdown-it-py', 'mdurl',
    'typing-extensions', 'jinja2', 'sympy', 'networkx', 'fsspec', 'zipp', 'requests',
})
# Required somewhere in the stack, deliberately not carried.
NOT_BUNDLED: dict[str, str] = {
    'opencv-python': 'mmengine asks for it, the GPU machine has opencv-python-headless (same cv2)',
    'wandb': 'optional (use_wandb=True); about 20 MiB with its dependencies, and offline there',
    'tomli': 'yapf needs it on Python < 3.11 only',
    'ruff': 'the linter of `make lint`: nothing runs it there',
    'optuna': 'tools/search.py only (handbone_mmseg.search, which registration does not '
              'import): the GPU run searches nothing',
    'playwright': "the viewer's browser tests: the GPU run drives no browser",
}
# The dry run's stand-in for the GPU image: what of ON_GPU this stack imports or builds with.
# setuptools >= 82 (no pkg_resources) is the worst case for the build: the bundle's must win.
DRY_RUN_BASE = ('torch==2.13.0', 'torchvision==0.28.0', 'timm', 'numpy>=2,<3',
                'opencv-python-headless', 'matplotlib', 'scipy', 'pillow', 'pyyaml', 'packaging',
                'rich', 'regex', 'pytest', 'setuptools>=82')
MAX_MIB = 60.0
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64')
# Markers evaluated as on the GPU machine (CPython 3.12 on x86-64 Linux).
GPU_MARKERS = dict(python_version='3.12', python_full_version='3.12.3', sys_platform='linux',
                   platform_system='Linux', platform_machine='x86_64', os_name='posix',
                   implementation_name='cpython', platform_python_implementation='CPython',
                   extra='')


def canonical(name: str) -> str:
    """PEP 503 name: ``PyYAML`` and ``pyyaml``, ``typing_extensions`` and ``typing-extensions``."""
    return str(canonicalize_name(name))


def installs_on(wheel: Path, python: str) -> bool:
    """Whether pip would install ``wheel`` on CPython ``python`` ('3.12') on x86-64 Linux."""
    version = tuple(int(v) for v in python.split('.'))
    abi = 'cp' + python.replace('.', '')
    supported = {*tags.cpython_tags(version, [abi], PLATFORMS),
                 *tags.compatible_tags(version, abi, PLATFORMS)}
    return not supported.isdisjoint(parse_wheel_filename(wheel.name)[3])


def folder_mib(path: Path) -> float:
    """Size of the files under ``path`` in MiB (apparent size, as the transfer counts it)."""
    return sum(f.stat().st_size for f in path.rglob('*') if f.is_file()) / 2**20


def check_size(path: Path, limit_mib: float = MAX_MIB) -> float:
    """The folder's size in MiB; ``ValueError`` naming the biggest files when over ``limit_mib``."""
    if not path.is_dir():
        raise ValueError(f'{path}: no such folder')
    mib = folder_mib(path)
    if mib > limit_mib:
        biggest = sorted((f for f in path.rglob('*') if f.is_file()),
                         key=lambda f: f.stat().st_size, reverse=True)[:3]
        listing = ', '.join(f'{f.name} {f.stat().st_size / 2**20:.1f} MiB' for f in biggest)
        raise ValueError(f'{path} holds {mib:.1f} MiB, over the {limit_mib:g} MiB limit (the '
                         f'working tree and carried paths travel together, 64 MiB at most); '
                         f'biggest: {listing}')
    return mib


def wheel_requirements(wheel: Path) -> list[str]:
    """Names (canonical) that a wheel requires on the GPU machine, extras left out."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith('.dist-info/METADATA'))
        headers = email.parser.Parser().parsestr(zf.read(meta).decode())
    names = []
    for line in headers.get_all('Requires-Dist') or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(GPU_MARKERS):
            names.append(canonical(req.name))
    return names


def missing_requirements(required_by: dict[str, Iterable[str]]) -> list[str]:
    """``'X needs Y'`` for each requirement neither bundled, on the GPU machine, nor left out."""
    covered = ({canonical(n) for n in (*WHEELS, *SDISTS, *BUILT)} | ON_GPU
               | {canonical(n) for n in NOT_BUNDLED})
    return sorted(f'{owner} needs {name}' for owner, names in required_by.items()
                  for name in names if canonical(name) not in covered)


def check_contents(dest: Path, dry_run_python: str = '3.11') -> None:
    """Each pin has its wheel (cp312 and, for ``COMPILED``, cp311), each sdist its archive,
    and the wheels' own requirements are covered; ``ValueError`` listing every gap."""
    problems = []
    wheels = sorted(dest.glob('*.whl'))
    for name, version in {**WHEELS, **BUILT}.items():
        found = [w for w in wheels if parse_wheel_filename(w.name)[:2] ==
                 (canonicalize_name(name), Version(version))]
        pythons = ['3.12', dry_run_python] if name in COMPILED else ['3.12']
        problems += [f'no wheel of {name}=={version} for Python {py}' for py in pythons
                     if not any(installs_on(w, py) for w in found)]
    for name, version in SDISTS.items():
        if not (dest / f'{name}-{version}.tar.gz').is_file():
            problems.append(f'no source archive {name}-{version}.tar.gz')
    problems += missing_requirements({w.name: wheel_requirements(w) for w in wheels})
    if problems:
        raise ValueError(f'{dest} is incomplete: ' + '; '.join(problems))


def pip_download(dest: Path, args: Sequence[str]) -> None:
    cmd = [sys.executable, '-m', 'pip', 'download', '--disable-pip-version-check',
           '--no-deps', '-d', str(dest), *args]
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def download(dest: Path, dry_run_python: str = '3.11') -> None:
    """Fill ``dest`` afresh (old versions would make two candidates for one name), keeping
    mmcv wheels that ``gpu_run.sh`` built there and brought back."""
    dest.mkdir(parents=True, exist_ok=True)
    prebuilt = tuple(f'{name}-{version}-' for name, version in SDISTS.items())
    for path in dest.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif not (path.name.startswith(prebuilt) and path.suffix == '.whl'):
            path.unlink()
    platforms = [a for p in PLATFORMS for a in ('--platform', p)]
    pins = [f'{name}=={version}' for name, version in WHEELS.items()]
    pip_download(dest, ['--only-binary=:all:', '--implementation', 'cp', '--python-version',
                        '3.12', *platforms, *pins])
    abi = 'cp' + dry_run_python.replace('.', '')
    pip_download(dest, ['--only-binary=:all:', '--implementation', 'cp', '--python-version',
                        dry_run_python, '--abi', abi, *platforms,
                        *(f'{n}=={WHEELS[n]}' for n in COMPILED)])
    # pip reads an sdist's metadata even for a download; an isolated build gets a
    # setuptools without the pkg_resources that mmcv's setup.py imports (a PIP_CONSTRAINT
    # did not reach it), so the metadata is read with this venv's setuptools (< 82, as
    # `make setup` pins it).
    pip_download(dest, ['--no-build-isolation', '--no-binary=:all:',
                        *(f'{n}=={v}' for n, v in SDISTS.items())])
    for name, version in BUILT.items():
        subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--disable-pip-version-check',
                        '--no-deps', '-w', str(dest), f'{name}=={version}'], check=True)
    pins += [f'{name}=={version}' for name, version in BUILT.items()]
    (dest / 'requirements.txt').write_text(
        '# Installed by benchmarks/gpu_run.sh with --no-index --no-deps; written by '
        'benchmarks/gpu_bundle.py\n' + ''.join(f'{p}\n' for p in pins))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dest', type=Path, default=ROOT / 'gpu_bundle',
                        help='output folder, emptied first (default: gpu_bundle/)')
    parser.add_argument('--max-mib', type=float, default=MAX_MIB,
                        help=f'fail above this size (default {MAX_MIB:g})')
    parser.add_argument('--dry-run-python', default='3.11',
                        help='also fetch compiled wheels for this Python (the CPU dry run)')
    parser.add_argument('--check-only', action='store_true',
                        help='download nothing: check the size and contents of --dest')
    args = parser.parse_args(argv)
    try:
        if not args.check_only:
            download(args.dest, args.dry_run_python)
        mib = check_size(args.dest, args.max_mib)
        check_contents(args.dest, args.dry_run_python)
    except (ValueError, subprocess.CalledProcessError) as err:
        print(f'gpu_bundle: {err}', file=sys.stderr)
        return 1
    files = sum(1 for f in args.dest.iterdir() if f.is_file())
    print(f'gpu_bundle: {args.dest} holds {files} files, {mib:.1f} MiB '
          f'(limit {args.max_mib:g} MiB); carry it with run(carry=["{args.dest.name}"])')
    return 0


if __name__ == '__main__':
    sys.exit(main())
