"""A local, Hugging Face Hub-compatible HTTP endpoint for tests.

The real ``huggingface_hub`` client (``HfApi``, ``hf_hub_download``, ``snapshot_download``, ``create_repo``,
``create_commit``/``upload_file``, ``list_models``, ``list_repo_files``/``list_repo_tree``, ``list_repo_commits``,
``model_info``, ``dataset_info``, ``repo_info``, the Jobs API, ...) talks to it over real HTTP when ``HF_ENDPOINT``
points at it. The URLs, query parameters, headers and JSON keys answered are the ones huggingface_hub 2.x sends and
reads (see ``hf_api.py``, ``file_download.py``, ``_commit_api.py`` and ``utils/_http.py`` in the installed client).
The server uses the standard library and PyYAML (README front matter) only.

Python API::

    server = HubServer(root, host="127.0.0.1", port=0).start()   # or: with HubServer(root) as server: ...
    server.url                       # http://127.0.0.1:<port>
    server.tokens                    # {"hf_write": "write", "hf_read": "read"}; writes need a write token
    server.gated_denied_tokens       # valid tokens refused on gated repos (403 GatedRepo)
    server.add_user("alice")         # -> "hf_alice_write"; commits with it are authored by alice
    server.inject("503", repo_id="org/name", times=1)   # faults, see faults.py
    server.request_log               # [(method, path, status)], status 0 = connection dropped ("timeout")
    server.resolved_files()          # [(repo_id, path)] of successful GET resolves (include_head=True: HEADs too)
    server.repo_sha("org/name")      # current commit id
    server.commits("org/name", "dataset")   # history, newest first: {id, authors, title, date, tree, changes}
    server.jobs                      # submitted HF Jobs, see jobs.py
    server.stop()
    make_repo(root, "org/name", {"model_index.json": "{...}"}, repo_type="model", meta={"downloads": 3})

Start by hand: ``python -m tests.hub_server --root PATH [--host 127.0.0.1] [--port 8765]`` (see __main__.py).

One module per concern, each readable on its own:

    server.py    HubServer: lifecycle (start, stop, url) and the per-repo helpers above
    routes.py    which URL is which Hub call; the HTTP handler (parse, fault, dispatch, log, send)
    wire.py      request, response, the Hub's error answer and JSON conventions
    storage.py   repos, files and every revision on disk; make_repo
    metadata.py  what the Hub says about a repo (tags, pipeline_tag, gated, card data) from files and sidecar
    repos.py     access checks, info, listings, refs, create/delete repo
    files.py     resolve (downloads, Range), tree, paths-info
    commits.py   create_commit (parent_commit 412), history and authors, lastCommit
    users.py     tokens, users, whoami
    jobs.py      the HF Jobs API, answered without running anything
    faults.py    fault injection and the request log
    control.py   the /_test/ control endpoints of a server started by hand
    client.py    pointing the real huggingface_hub client at a server (tests/conftest.py)
"""

from tests.hub_server.client import configure_hf_client, prepare_environment, reset_hf_client
from tests.hub_server.faults import FAULT_KINDS, Fault
from tests.hub_server.server import HubServer
from tests.hub_server.storage import make_repo
from tests.hub_server.users import DEFAULT_TOKENS, READ_TOKEN, WRITE_TOKEN

__all__ = [
    "DEFAULT_TOKENS",
    "FAULT_KINDS",
    "READ_TOKEN",
    "WRITE_TOKEN",
    "Fault",
    "HubServer",
    "configure_hf_client",
    "make_repo",
    "prepare_environment",
    "reset_hf_client",
]
