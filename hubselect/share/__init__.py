"""Stage 6, sharing: the edge dataset on the Hub, records and profiles from everyone, checked and synced."""

# * :mod:`hubselect.share.records`   the dataset's repo and layout, the record format and its checks
# * :mod:`hubselect.share.profiles`  the checks of a profile file, the profiles a push shares
# * :mod:`hubselect.share.push`      one commit of records and profiles, the dataset card
# * :mod:`hubselect.share.trust`     a file's writer and the zoo's trust policy (``trust.json``)
# * :mod:`hubselect.share.sync`      ``hubselect sync`` (:func:`pull`) and the zoo's ``records`` table
#
# Their public names are importable from here too (``from hubselect.share import pull``).

from hubselect._compat import forward

__getattr__ = forward("hubselect.share.records", "hubselect.share.profiles", "hubselect.share.push",
                      "hubselect.share.trust", "hubselect.share.sync")
