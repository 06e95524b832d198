"""Start the test Hub endpoint by hand: ``python -m tests.hub_server --root PATH [--host 127.0.0.1] [--port 8765]``.

It prints ``Hub server for ROOT running at URL`` and serves until interrupted (Ctrl-C); point a client at it with
``export HF_ENDPOINT=URL``. Faults and the request log are reachable over HTTP (see control.py).
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.hub_server.server import HubServer
from tests.hub_server.users import READ_TOKEN, WRITE_TOKEN


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hub_server",
                                     description="A local, Hugging Face Hub-compatible HTTP endpoint for tests.")
    parser.add_argument("--root", required=True, help="hub root folder (models/<org>/<name>/..., datasets/...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--token", action="append", default=None, metavar="TOKEN[:read|write[:USER]]",
        help=f"valid token, optionally of its own user (repeatable; default: {WRITE_TOKEN}:write and "
             f"{READ_TOKEN}:read, both of --username)",
    )
    parser.add_argument("--username", default="test-user")
    parser.add_argument("--timeout-delay", type=float, default=3.0)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    tokens, users = None, {}
    if args.token:
        tokens = {}
        for t in args.token:
            name, _, rest = t.partition(":")
            perm, _, user = rest.partition(":")
            tokens[name] = perm or "read"
            if user:
                users[name] = user
    server = HubServer(
        args.root, args.host, args.port, tokens=tokens, username=args.username, users=users,
        timeout_delay=args.timeout_delay, page_size=args.page_size, verbose=args.verbose,
    ).start()
    print(f"Hub server for {server.root} running at {server.url}", flush=True)
    print(f"  export HF_ENDPOINT={server.url}", flush=True)
    print(f"  tokens: {', '.join(f'{k} ({v})' for k, v in server.tokens.items())}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
