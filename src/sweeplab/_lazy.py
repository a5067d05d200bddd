"""Public names of a package imported from their submodules on first use (PEP 562).

``sweeplab.dmf``, ``sweeplab.mcvd`` and ``sweeplab.sweep`` declare which submodule defines each
public name; :func:`lazy_names` installs the attribute lookup. Nothing heavy (scipy, numba,
Dask, xarray, zarr) is imported until a name that needs it is used, so ``sweeplab status`` and
a Snakefile parse stay light.

A function may share its name with the submodule that defines it (``dmf.escape``,
``dmf.sharpness``, ``sweep.aggregate``). Importing a submodule binds it to the package's
attribute of the same name; the package's module type ignores that binding for public names,
so the name keeps meaning the function whatever was imported first. The submodule is still
reached by ``from sweeplab.dmf.escape import ...`` or :func:`importlib.import_module`.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, where: Mapping[str, str]) -> None:
    """Resolve the public names of ``package`` lazily.

    Parameters
    ----------
    package : str
        The package's ``__name__`` (already in :data:`sys.modules`).
    where : mapping of str to str
        Public name -> submodule (relative to ``package``) that defines it.

    """
    where = dict(where)

    class _Package(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name in where:
                value = getattr(importlib.import_module(f".{where[name]}", package), name)
                self.__dict__[name] = value
                return value
            raise AttributeError(f"module {package!r} has no attribute {name!r}")

        def __setattr__(self, name: str, value: Any) -> None:
            if name in where and isinstance(value, types.ModuleType):
                return  # the import system binding a same-named submodule: keep the function
            super().__setattr__(name, value)

        def __dir__(self) -> list[str]:
            return sorted(set(self.__dict__) | set(where))

    sys.modules[package].__class__ = _Package
