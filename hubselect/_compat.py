"""Old import paths of the public API, kept for one release after the stage layout (0.1 → 0.2).

``hubselect.select``, ``hubselect.edges``, ``hubselect.profiles`` and the other flat modules of 0.1
now live in stage folders. Importing an old path still works and warns once with the new path. An old
module that maps to one new module yields that module itself (a monkeypatch on it patches the real
thing); one that was split (``hubselect.select``, ``hubselect.edges``) yields a stand-in that forwards
each name to the new modules, so patch those at their new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# old module -> the new module(s) its names now live in (first match wins)
OLD_PATHS: dict[str, tuple[str, ...]] = {
    "hubselect.select": ("hubselect.rank.api", "hubselect.rank.estimator", "hubselect.zoo.tables",
                         "hubselect.constants"),
    "hubselect.ranker": ("hubselect.rank.predictors",),
    "hubselect.prior": ("hubselect.rank.prior",),
    "hubselect.loadable": ("hubselect.rank.loadable",),
    "hubselect.graph": ("hubselect.rank.graph.matching",),
    "hubselect.node2vec": ("hubselect.rank.graph.node2vec",),
    "hubselect.images": ("hubselect.profile.sources",),
    "hubselect.probes": ("hubselect.profile.probes",),
    "hubselect.profiles": ("hubselect.profile.profiles",),
    "hubselect.distance": ("hubselect.profile.distance",),
    "hubselect.metrics": ("hubselect.evaluate.metrics",),
    "hubselect.plots": ("hubselect.evaluate.plots",),
    "hubselect.synthetic": ("hubselect.evaluate.synthetic",),
    "hubselect.zoo_listing": ("hubselect.zoo.listing",),
    "hubselect.features": ("hubselect.zoo.features",),
    "hubselect.staging": ("hubselect.zoo.staging", "hubselect.profile.profiles"),
    "hubselect.edges": ("hubselect.share.records", "hubselect.share.profiles", "hubselect.share.push",
                        "hubselect.share.trust", "hubselect.share.sync"),
    "hubselect.hf_extension": ("hubselect.cli.hf_extension",),
}


def forward(*modules: str):
    """A module ``__getattr__`` that finds a name in ``modules`` (imported on first use)."""
    def __getattr__(name: str):
        if not name.startswith("__"):
            for module in modules:
                mod = importlib.import_module(module)
                if hasattr(mod, name):
                    return getattr(mod, name)
        raise AttributeError(name)
    return __getattr__


class _OldPathLoader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]):
        self.targets = targets

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {' / '.join(self.targets)}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=3)
        if len(self.targets) == 1:
            module = importlib.import_module(self.targets[0])
            self.real_spec = module.__spec__     # importlib stamps the old path's spec on it: put it back
            return module
        module = types.ModuleType(spec.name, f"Old path of {', '.join(self.targets)}.")
        module.__getattr__ = forward(*self.targets)
        return module

    def exec_module(self, module):
        real = getattr(self, "real_spec", None)
        if real is not None:
            module.__spec__ = real
            module.__loader__ = real.loader


class _OldPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in OLD_PATHS:
            return importlib.util.spec_from_loader(fullname, _OldPathLoader(OLD_PATHS[fullname]))
        return None


def install() -> None:
    if not any(isinstance(f, _OldPathFinder) for f in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())
