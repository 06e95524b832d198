"""Stage 3, ranking: the MatchAndChoose estimator, predictors, cold-start prior, ``rank`` API; graph/."""

# ``hubselect.rank`` is this package and is callable: ``hubselect.rank("user/my-dataset")`` is
# :func:`hubselect.rank.api.rank`.

import sys
import types

from hubselect._compat import forward

__getattr__ = forward("hubselect.rank.api", "hubselect.rank.estimator")


class _CallableStage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from hubselect.rank.api import rank
        return rank(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableStage
