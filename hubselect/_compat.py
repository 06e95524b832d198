"""Old import paths of the public API, kept for one release after the stage layout (0.1 → 0.2).

``hubselect.select``, ``hubselect.edges``, ``hubselect.profiles`` and the other flat modules of 0.1
now live in stage folders. Importing an old path still works: it yields the new module (so a
monkeypatch on it patches the real thing) and warns once with the new path.
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
    "hubselect.select": ("hubselect.rank.api", "hubselect.rank.estimator", "hubselect.zoo.tables"),
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
    "hubselect.staging": ("hubselect.zoo.staging",),
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
            return importlib.import_module(self.targets[0])
        module = types.ModuleType(spec.name, f"Old path of {', '.join(self.targets)}.")
        module.__getattr__ = forward(*self.targets)
        return module

    def exec_module(self, module):
        pass


class _OldPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in OLD_PATHS:
            return importlib.util.spec_from_loader(fullname, _OldPathLoader(OLD_PATHS[fullname]))
        return None


def install() -> None:
    if not any(isinstance(f, _OldPathFinder) for f in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())
