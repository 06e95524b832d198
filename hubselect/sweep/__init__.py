"""Sweeps: fine-tune many (model, dataset) pairs, locally or as Hugging Face Jobs, and suggest the pairs
that would teach the ranking most (``hubselect sweep``)."""

from hubselect._compat import forward

__getattr__ = forward("hubselect.sweep.pairs")
