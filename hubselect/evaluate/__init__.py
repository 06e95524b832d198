"""Stage 4, evaluation: the leave-one-dataset-out protocol, baselines and studies, metrics, plots and
synthetic zoos (``hubselect evaluate``)."""

from hubselect._compat import forward

__getattr__ = forward("hubselect.evaluate.protocol")
