"""Layering: ``handbone_mmseg.io`` (file formats) imports nothing above it, and no package
imports one from a layer above its own (orchestration sits below ``tools/`` only)."""
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


# The package's layers, bottom up (README "Layout"): a module may import its own layer and
# those below. Orchestration (recipes, audits, viewers, searches) is the top: nothing in the
# package builds on it, so each of them can change without touching training or inference.
LAYERS = [
    {'classes', 'utils', 'compat'},
    {'functional'},
    {'io'},
    {'datasets', 'models', 'evaluation', 'runtime', 'phantom'},
    {'visualization'},
    {'apis', 'convert', 'register'},
    {'cli'},
    {'recipe', 'audit', 'viewer', 'search'},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
PACKAGE = ROOT / 'handbone_mmseg'


def _top_level(path) -> str:
    """The package (or top-level module) of ``handbone_mmseg`` a file belongs to."""
    return path.relative_to(PACKAGE).with_suffix('').parts[0]


def _imported_parts(path) -> list[tuple[int, str]]:
    """``(line, top-level part of handbone_mmseg)`` of every import in a file."""
    rel = path.relative_to(ROOT).with_suffix('').parts
    package = rel if rel[-1] == '__init__' else rel[:-1]
    package = package[:-1] if package[-1] == '__init__' else package
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            module = [*base, *(node.module.split('.') if node.module else [])]
            if not node.module:  # `from . import a, b`
                found += [(node.lineno, a.name) for a in node.names if len(module) == 1]
            if module[:1] == ['handbone_mmseg'] and len(module) > 1:
                found.append((node.lineno, module[1]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split('.')[1]) for a in node.names
                      if a.name.startswith('handbone_mmseg.')]
    return found


def test_every_package_has_a_layer():
    parts = {_top_level(p) for p in PACKAGE.rglob('*.py')} - {'__init__'}
    assert sorted(parts - set(RANK)) == []


def test_layer_parser_reads_relative_imports():
    parts = {name for _, name in _imported_parts(PACKAGE / 'evaluation' / 'ensemble.py')}
    assert parts == {'classes', 'functional', 'io', 'utils'}
    imports = _imported_parts(PACKAGE / 'register.py')
    assert {'datasets', 'models', 'apis'} <= {name for _, name in imports}


@pytest.mark.parametrize('path', sorted(PACKAGE.rglob('*.py')),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    part = _top_level(path)
    if part == '__init__':
        return
    above = [(line, name) for line, name in _imported_parts(path)
             if name in RANK and RANK[name] > RANK[part]]
    assert above == []
