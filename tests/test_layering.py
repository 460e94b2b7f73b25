"""Layering: ``handbone_mmseg.io`` (file formats) imports nothing above it."""
import ast
import json
import pkgutil
import subprocess
import sys

import pytest

import handbone_mmseg.io

from helpers import ROOT

IO = ROOT / 'handbone_mmseg' / 'io'
IO_MODULES = sorted(m.name for m in pkgutil.iter_modules(handbone_mmseg.io.__path__))
# below io: its own modules, the pure maths, the class list, and utils (the lazy exports
# every package's __init__ is built with)
BELOW = ('io', 'functional', 'classes', 'utils')


def _above(module: str) -> bool:
    """Whether a ``handbone_mmseg`` module lies outside io/ and what io may build on."""
    parts = module.split('.')
    return len(parts) > 1 and parts[1] not in BELOW


def test_every_io_module_is_checked():
    assert {'annotations', 'coco', 'predictions', 'prob_dump', 'ownership'} <= set(IO_MODULES)


@pytest.mark.parametrize('module', IO_MODULES)
def test_importing_an_io_module_imports_nothing_above_io(module):
    """Before: io.predictions imported the visualisation package."""
    code = (f'import json, sys, handbone_mmseg.io.{module}\n'
            'print(json.dumps(sorted(m for m in sys.modules if m.startswith("handbone_mmseg"))))')
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert f'handbone_mmseg.io.{module}' in loaded
    assert [m for m in loaded if _above(m)] == []


def _imported(path) -> list[tuple[int, str]]:
    """``(line, handbone_mmseg module)`` of every import in an io file, function bodies too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            # relative to handbone_mmseg.io: one dot is io, two the package
            base = 'handbone_mmseg.io'.rsplit('.', node.level - 1)[0] if node.level else ''
            module = '.'.join(p for p in (base, node.module) if p)
            names = [module] if node.module else [f'{module}.{a.name}' for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.startswith('handbone_mmseg')]
    return found


@pytest.mark.parametrize('module', IO_MODULES + ['__init__'])
def test_no_io_module_imports_above_io_even_inside_a_function(module):
    """Before: io.coco imported the dataset and the scorer inside its converters."""
    path = IO / f'{module}.py'
    assert [(line, m) for line, m in _imported(path) if _above(m)] == []
