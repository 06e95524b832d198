"""Stage 4, evaluation: leave-one-dataset-out, baselines, studies, metrics, plots (``hubselect evaluate``)."""

from hubselect._compat import forward

__getattr__ = forward("hubselect.evaluate.protocol")
