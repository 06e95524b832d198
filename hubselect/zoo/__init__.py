"""Stage 1, the zoo: its format on disk, its tables as the ranker reads them, listings, model features."""

from hubselect.zoo.format import (  # noqa: F401  (the zoo's public names, at the stage's own path)
    Zoo, ZooInfo, atomic_write_bytes, atomic_write_json, default_zoo_dir, shipped_zoo_dir,
)

from hubselect._compat import forward  # noqa: E402

__getattr__ = forward("hubselect.zoo.format")     # the rest of 0.1's hubselect.zoo
