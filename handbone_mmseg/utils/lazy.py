"""Package members imported on first use (PEP 562).

The tools after training (check, tune, ensemble, look) need neither torch nor mmseg, which
cost seconds to import. A package built with ``lazy_exports`` imports a member's submodule
only when the member is used, so ``from handbone_mmseg.io import ProbDump`` stays cheap
while ``handbone_mmseg.io`` still offers every name it did.
"""
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        exports: per submodule (relative, e.g. ``'.rle'``) the names it provides.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f'module {package!r} has no attribute {name!r}')
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # the next lookup skips __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, sorted(where)
