"""Stage 7, sweeps: fine-tune many (model, dataset) pairs, locally or as Hugging Face Jobs (``hubselect sweep``)."""

# * :mod:`hubselect.sweep.pairs`        the pending pairs (models × datasets less the measured ones), their settings
# * :mod:`hubselect.sweep.local`        the ``local`` backend: in this process, or ``accelerate launch`` on N GPUs
# * :mod:`hubselect.sweep.jobs`         the ``hf-jobs`` backend: submit, wait for, cancel Hugging Face Jobs
# * :mod:`hubselect.sweep.suggestions`  active learning: the pairs worth measuring next (``--suggest``)
# * :mod:`hubselect.sweep.run`          :func:`sweep`, which finds the pending pairs and runs them on a backend
#
# Their public names are importable from here too (``from hubselect.sweep import sweep, suggest, BACKENDS``).

from hubselect._compat import forward

__getattr__ = forward("hubselect.sweep.pairs", "hubselect.sweep.run", "hubselect.sweep.local",
                      "hubselect.sweep.jobs", "hubselect.sweep.suggestions")
