"""Command line: ``python -m engine demo | diagram | replay | timeline | serve``."""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def write_diagram(folder: Path) -> list[Path]:
    """Write ``conversation.mmd`` (and ``conversation.svg`` when Graphviz is installed)."""
    from engine.core.diagram import diagram

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "conversation.mmd"]
    written[0].write_text(diagram(), encoding="utf-8")
    if shutil.which("dot"):
        svg = folder / "conversation.svg"
        dot = _graphviz_source()
        subprocess.run(["dot", "-Tsvg", "-o", str(svg)], input=dot.encode(), check=True)
        written.append(svg)
    return written


def _graphviz_source() -> str:
    """The same tables as Graphviz text (dot syntax), for the optional SVG."""
    from engine.core.states import MACHINES

    lines = ["digraph conversation {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    for spec in MACHINES:
        prefix = spec.name
        lines.append(f"  subgraph cluster_{prefix} {{ label={prefix!r};".replace("'", '"'))
        for t in spec.table:
            sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
            for source in sources:
                dest = t["dest"] if t["dest"] is not None else source
                cond = f" [{t['conditions']}]" if "conditions" in t else ""
                lines.append(f'    "{prefix}.{source}" -> "{prefix}.{dest}" [label="{t["trigger"]}{cond}"];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``engine`` console script."""
    parser = argparse.ArgumentParser(prog="engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("diagram", help="write the state diagram into diagrams/")
    d.add_argument("--out", type=Path, default=Path("diagrams"))
    demo = sub.add_parser("demo", help="run the scripted demo call against the local server")
    from engine.demo import add_arguments

    add_arguments(demo)
    r = sub.add_parser("replay", help="replay a recording through the state machine")
    r.add_argument("recording", type=Path)
    r.add_argument("--check", action="store_true", help="exit 1 if the client events differ")
    t = sub.add_parser("timeline", help="draw a recording as a self-contained HTML timeline")
    t.add_argument("recording", type=Path)
    t.add_argument("-o", "--output", type=Path, help="the HTML file (default: the recording with .html)")
    serve = sub.add_parser("serve", help="run the call gateway (phone calls through Twilio or Telnyx)")
    from engine.gateway.serve import add_arguments as add_serve_arguments

    add_serve_arguments(serve)
    args = parser.parse_args(argv)
    level = logging.INFO if args.command == "serve" else logging.WARNING  # serve logs each call
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "diagram":
        for path in write_diagram(args.out):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    if args.command == "replay":
        return _replay(args.recording, check=args.check)
    if args.command == "timeline":
        return _timeline(args.recording, args.output)
    if args.command == "demo":
        import anyio

        from engine.demo import run_demo

        return int(anyio.run(run_demo, args, sys.stdout, backend=args.backend))
    if args.command == "serve":
        import anyio

        from engine.gateway.serve import run_serve

        return int(anyio.run(run_serve, args, sys.stdout, backend=args.backend))
    return 2


def _replay(path: Path, *, check: bool) -> int:
    from engine.record import replay

    try:
        result = replay(path)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"cannot replay {path}: {exc}\n")
        return 2
    out = sys.stdout
    out.write(f"state timeline of {path}:\n")
    for line in result.timeline:
        out.write(f"  {line}\n")
    out.write(f"client events: {len(result.replayed)} replayed, {len(result.recorded)} recorded\n")
    if result.matches:
        out.write("the replay sent exactly the recorded client events\n")
        return 0
    out.write(f"MISMATCH: {result.first_difference()}\n")
    return 1 if check else 0


def _timeline(path: Path, output: Path | None) -> int:
    from engine.timeline import render_file

    target = output if output is not None else path.with_suffix(".html")
    try:
        text = render_file(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"cannot draw {path}: {exc}\n")
        return 2
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"cannot write {target}: {exc}\n")
        return 2
    sys.stdout.write(f"wrote {target}\n")
    return 0
