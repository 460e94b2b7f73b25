"""Let PyPI's torchvision import under a CPU build of torch (``make setup`` on a CPU venv).

PyPI's Linux wheel of torchvision 0.28.0 is built against the CUDA build of torch 2.13. Under
``torch==2.13.0+cpu`` its C++ ops (``torchvision/_C.so``, which links ``libtorch_cuda.so``)
cannot load, and ``torchvision/_meta_registrations.py`` then registers fake kernels for
``torchvision::nms`` and ``::qnms`` regardless, so ``import torchvision`` raises
``RuntimeError: operator torchvision::nms does not exist``. timm imports torchvision, and
mmseg imports timm (``TIMMBackbone``) catching only ImportError: ``import mmseg.models`` fails.

Installed, this module hooks the import of ``torchvision.extension`` (the module that tries to
load the ops) and, only if the ops did not load, defines those two operator schemas without
kernels. torchvision's Python code (transforms, models: what timm uses) then imports; its C++
ops (nms, roi_align, deform_conv2d ...) stay unavailable, as they were. Where the ops load (a
CUDA venv with the matching torch) the hook does nothing.

``python tools/torchvision_cpu_shim.py`` installs it into the running interpreter's
site-packages (this file as ``handbone_torchvision_shim.py`` and a one-line ``.pth`` that
imports it at start-up; the import itself touches neither torch nor torchvision).
``--uninstall`` removes both.
"""
import importlib.abc
import importlib.machinery
import sys

NAME = 'handbone_torchvision_shim'
# torchvision's own schemas (torchvision/csrc/ops/nms.cpp); fake kernels need only these.
SCHEMAS = ('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
           'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')


class _ExtensionLoader(importlib.abc.Loader):
    """Runs ``torchvision.extension``, then defines the schemas if its ops did not load."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        if module._has_ops():
            return
        import torch
        library = torch.library.Library('torchvision', 'DEF')
        for schema in SCHEMAS:
            library.define(schema)
        module._handbone_schemas = library  # the definitions last as long as this object


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != 'torchvision.extension':
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _ExtensionLoader(spec.loader)
        return spec


def install_hook() -> None:
    """Put the finder first on ``sys.meta_path`` (what the ``.pth`` line runs)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def main(argv: list[str] | None = None) -> int:
    """Install or remove the hook; imports here keep the start-up import light."""
    import argparse
    import shutil
    import sysconfig
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--uninstall', action='store_true', help='remove the hook')
    args = parser.parse_args(argv)
    site = Path(sysconfig.get_paths()['purelib'])
    module, pth = site / f'{NAME}.py', site / f'{NAME}.pth'
    if args.uninstall:
        module.unlink(missing_ok=True)
        pth.unlink(missing_ok=True)
        print(f'removed {module} and {pth}')
        return 0
    shutil.copyfile(__file__, module)
    pth.write_text(f'import {NAME}; {NAME}.install_hook()\n')
    print(f'installed {module} and {pth}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
