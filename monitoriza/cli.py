"""The ``monitoriza`` command line.

Exit status: 0 on success, 1 when a check fails, 2 on bad usage or a bad configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from monitoriza import __version__
from monitoriza.config import load_config
from monitoriza.config.schema import ListenAddress
from monitoriza.exceptions import ConfigError
from monitoriza.exporter.app import serve

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


def _listen(value: str) -> str:
    """Validate ``--listen`` with the same rule as the configuration file."""
    try:
        return str(TypeAdapter(ListenAddress).validate_python(value))
    except ValidationError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a HOST:PORT address") from None


def _print_config_errors(path: Path, error: ConfigError) -> None:
    for message in error.messages:
        print(f"{path}: {message}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        _print_config_errors(args.file, exc)
        return EXIT_CHECK_FAILED
    probes = sum(len(service.probes) for service in config.services.values())
    print(f"{args.file}: OK ({len(config.services)} services, {probes} probes)")
    return EXIT_OK


def cmd_exporter(args: argparse.Namespace) -> int:
    try:
        return serve(args.config, args.listen)
    except ConfigError as exc:
        _print_config_errors(args.config, exc)
        return EXIT_USAGE
    except OSError as exc:
        print(f"monitoriza exporter: cannot listen: {exc}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitoriza",
        description="Prometheus/Alertmanager-centric monitor and auto-healer.")
    parser.add_argument("--version", action="version", version=f"monitoriza {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(handler=cmd_check_config)

    exporter = commands.add_parser("exporter", help="run the probes and serve /metrics")
    exporter.add_argument("--config", type=Path, required=True, metavar="FILE")
    exporter.add_argument("--listen", type=_listen, metavar="HOST:PORT",
                          help="overrides exporter.listen from the configuration")
    exporter.set_defaults(handler=cmd_exporter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
