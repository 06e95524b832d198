"""``python -m hubselect.cli``: the same command as ``hubselect``."""

from hubselect.cli.root import main

main()
