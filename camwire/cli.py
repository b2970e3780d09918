"""The ``camwire`` command: one sub-command per daemon, plus ``run`` (all of them) and tools."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> (module, one-line help); modules are imported only when their command runs
COMMANDS = {
    "extractor": ("extractor.daemon", "decode a camera source and push frames to the ventilator"),
    "ventilator": ("classifier.ventilator", "share frames out to classifier workers"),
    "classifier": ("classifier.worker", "run a detector on frames from the ventilator"),
    "sink": ("classifier.sink", "turn results into events, snapshots and camera status"),
    "recorder": ("recorder.daemon", "record cameras into a ring of files; keep the files around events"),
    "clip": ("recorder.clip", "write one file for a camera and a time range from the recorder's ring"),
    "run": ("camwire.supervisor", "start and supervise the whole pipeline on this host"),
    "sample-clip": ("camwire.sample", "write the built-in sample clip (H.264) for demos and tests"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camwire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.main(args)
    except ValueError as exc:  # bad options found after parsing (a detector spec, sampling)
        print(f"camwire {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
