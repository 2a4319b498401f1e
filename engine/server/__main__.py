"""``python -m engine.server``: run the local realtime server until interrupted."""

from __future__ import annotations

import argparse
import logging
import sys

import anyio

from engine.server.app import PATH, LocalServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.server",
        description="A local realtime WebSocket server speaking Inworld's and OpenAI's handshakes "
        "(no network, deterministic assistant).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free port; default 8765)")
    parser.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="response pacing: 1 real time, 0 as fast as possible (default 1)",
    )
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio", help="async backend")
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=15.0,
        help="seconds between 'ping' events (0: none; default 15)",
    )
    parser.add_argument("--expected-key", default=None, help="accept only this credential in Authorization")
    parser.add_argument(
        "--say", action="append", default=[], metavar="TEXT", help="scripted transcript of the next utterance"
    )
    parser.add_argument(
        "--replay",
        default=None,
        metavar="FILE",
        help="serve a recording (engine record=...) to the first client",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


async def _main(args: argparse.Namespace) -> None:
    server = LocalServer(
        pace=args.pace,
        expected_key=args.expected_key,
        ping_interval=args.ping_interval or None,
    )
    for text in args.say:
        server.say_next(text)
    if args.replay:
        from engine.record import server_script

        server.replay(server_script(args.replay), index=0)
    async with anyio.create_task_group() as group:
        port = await group.start(server.run, args.host, args.port)
        log = logging.getLogger("engine.server")
        log.info(
            "local realtime server on ws://%s:%d%s?key=<session>&protocol=realtime", args.host, port, PATH
        )
        log.info("OpenAI's form is accepted too: ws://%s:%d/v1/realtime?model=<model>", args.host, port)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, configure logging to stderr, and serve until Ctrl-C."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        anyio.run(_main, args, backend=args.backend)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
