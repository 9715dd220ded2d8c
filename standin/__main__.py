"""``python -m standin``: run the MongoDB wire-protocol stand-in server."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from .engine import SERVER_VERSION, Engine
from .server import StandinServer
from .snapshot import DataFileLocked, Snapshotter, load_snapshot, lock_data_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m standin",
        description=(
            "In-memory MongoDB wire-protocol server (reports MongoDB "
            f"{SERVER_VERSION}) for development and tests."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=27017, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument(
        "--data-file",
        help="BSON snapshot to load at start and save periodically and on shutdown",
    )
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=2.0,
        help="seconds between snapshots when data changed (0 disables; default 2)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine = Engine()
    snapshotter = None
    if args.data_file:
        try:
            lock_data_file(args.data_file)  # held until this process exits
        except (DataFileLocked, OSError) as exc:
            print(f"standin: {exc}", file=sys.stderr)
            return 3
        try:
            loaded = load_snapshot(engine, args.data_file)
        except (OSError, ValueError) as exc:
            print(f"standin: cannot load {args.data_file}: {exc}", file=sys.stderr)
            return 2
        if loaded:
            print(f"standin loaded {loaded} documents from {args.data_file}", flush=True)
        snapshotter = Snapshotter(engine, args.data_file, args.snapshot_interval)

    server = StandinServer(engine, args.host, args.port)
    try:
        port = server.bind()
    except OSError as exc:
        print(f"standin: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    engine.shutdown_hook = server.stop

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if snapshotter is not None:
        snapshotter.start()
    print(f"standin listening on {args.host}:{port}", flush=True)
    server.serve_forever()
    if snapshotter is not None:
        snapshotter.stop()
        snapshotter.save(force=True)
    print("standin stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
