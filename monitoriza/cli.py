"""The ``monitoriza`` command line.

Exit status: 0 on success, 1 when a check fails, 2 on bad usage or a bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from monitoriza import __version__, logs
from monitoriza.argtypes import between, duration, positive_duration, positive_float
from monitoriza.audit.commands import VerifyOptions, export_command, verify_command
from monitoriza.config import load_config
from monitoriza.config.schema import Config, ListenAddress
from monitoriza.drill.cli import add_drill_commands
from monitoriza.exceptions import ConfigError
from monitoriza.exporter.app import serve
from monitoriza.forecast.backtest import (
    BacktestError,
    coverage_of_steps,
    read_csv,
    replay,
    write,
)
from monitoriza.forecast.coverage import describe
from monitoriza.forecast.evaluate_csv import EvaluationError, evaluate_csvs, report_text
from monitoriza.forecast.model import DEFAULT_COVERAGE
from monitoriza.lint import default_alertmanager_file
from monitoriza.responder.server import serve as responder_serve
from monitoriza.stack import DEFAULT_RUN_DIR
from monitoriza.stack.ports import DEFAULT_BASE_PORT
from monitoriza.timescale import default_rules_dir, render_rules

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


def _load_or_report(path: Path) -> Config | None:
    """The configuration at ``path``, or None after printing each of its errors."""
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_config_errors(path, exc)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load_or_report(args.file)
    if config is None:
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


def cmd_responder(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        return responder_serve(config, args.listen, config_file=args.config)
    except ConfigError as exc:  # a token or key file the configuration names is unusable
        _print_config_errors(args.config, exc)
        return EXIT_USAGE


def cmd_audit(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    if args.audit_command == "verify":
        return verify_command(config, options=VerifyOptions(
            public_key=args.public_key, key_fingerprint=args.key_fingerprint,
            prometheus=args.prometheus, lookback=args.prometheus_lookback,
            selector=args.prometheus_selector))
    return export_command(config, args.since, sys.stdout)


def cmd_forecast_backtest(args: argparse.Namespace) -> int:
    try:
        times, values = read_csv(args.csv)
        steps = replay(times, values, threshold=args.threshold, direction=args.direction,
                       horizon=args.horizon, window=args.window,
                       every=args.step if args.step is not None else args.window / 6,
                       coverage=args.coverage)
        write(steps, sys.stdout, as_json=args.json)
        coverage = coverage_of_steps(steps, args.horizon)
        if args.json:
            print(json.dumps({"coverage": {"stated": args.coverage, **coverage.public()}}))
        else:
            print(describe(coverage, args.coverage))
    except BacktestError as exc:
        print(f"monitoriza forecast backtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# An interval level as forecasts.*.coverage takes it, and a quantile strictly inside (0, 1).
_coverage = between(0.5, 0.95, name="coverage", inclusive=True)
_quantile = between(0.0, 1.0, name="quantile", inclusive=False)


def cmd_forecast_evaluate(args: argparse.Namespace) -> int:
    try:
        result = evaluate_csvs(args.csv, threshold_quantile=args.threshold_quantile,
                               window=args.window, horizon=args.horizon,
                               target=args.target_false_alarms_per_day,
                               direction=args.direction, every=args.every)
    except EvaluationError as exc:
        print(f"monitoriza forecast evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"threshold_quantile": args.threshold_quantile,
                          "direction": args.direction, "every_s": args.every,
                          "window_s": args.window, "horizon_s": args.horizon,
                          **result.public()}, indent=2))
    else:
        print(report_text(result))
    return EXIT_OK


def cmd_rules_render(args: argparse.Namespace) -> int:
    try:
        written = render_rules(args.rules, args.out, args.time_scale)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"monitoriza rules render: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for path in written:
        print(path)
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    from monitoriza.stack.up import UpOptions, run_up  # noqa: PLC0415 - docker SDK, redis

    return run_up(UpOptions(config=args.config, demo=args.demo, run_dir=args.run_dir,
                            base_port=args.base_port, time_scale=args.time_scale,
                            docker_host=args.docker_host))


def cmd_report(args: argparse.Namespace) -> int:
    from monitoriza.report.run import report_command  # noqa: PLC0415 - only this command needs it

    return report_command(args.config, args.since, out=args.out, output_format=args.format,
                          prometheus_url=args.prometheus, progress=sys.stderr)


def cmd_lint(args: argparse.Namespace) -> int:
    from monitoriza.lint import lint_command  # noqa: PLC0415

    return lint_command(args.config, args.alertmanager, args.rules, args.prometheus,
                        sys.stdout, output_format=args.format)





def cmd_journal(args: argparse.Namespace) -> int:
    from monitoriza.responder import dead_letter_commands as journal  # noqa: PLC0415

    config = _load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    if args.journal_command == "dead-letters":
        return journal.dead_letters_command(config, as_json=args.json)
    return journal.replay_command(config, None if args.all else args.ids)


def cmd_demo_serve(args: argparse.Namespace) -> int:
    from monitoriza.demo.server import serve as demo_serve  # noqa: PLC0415

    return demo_serve(args.run_dir)


def cmd_demo_fault(args: argparse.Namespace) -> int:
    from monitoriza.demo import DemoError  # noqa: PLC0415
    from monitoriza.demo.faults import apply_fault  # noqa: PLC0415

    try:
        print(apply_fault(args.run_dir, args.service, args.kind))
    except DemoError as exc:
        print(f"monitoriza demo fault: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK



def _add_forecast_commands(
        commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``forecast backtest`` and ``forecast evaluate``."""
    forecast = commands.add_parser("forecast", help="time-to-failure forecasts")
    forecast_commands = forecast.add_subparsers(dest="forecast_command", required=True,
                                                metavar="COMMAND")
    backtest = forecast_commands.add_parser(
        "backtest", help="replay a timestamp,value CSV and print every forecast")
    backtest.add_argument("--csv", type=Path, required=True, metavar="FILE")
    backtest.add_argument("--threshold", type=float, required=True)
    backtest.add_argument("--direction", choices=["above", "below"], required=True)
    backtest.add_argument("--horizon", type=duration, required=True, metavar="DURATION")
    backtest.add_argument("--step", type=duration, metavar="DURATION",
                          help="time between forecasts (default: a sixth of the window)")
    backtest.add_argument("--window", type=duration, default=21600.0, metavar="DURATION",
                          help="history each forecast sees (default 6h)")
    backtest.add_argument("--coverage", type=_coverage, default=DEFAULT_COVERAGE, metavar="C",
                          help="the interval's level, as forecasts.*.coverage (default 0.8)")
    backtest.add_argument("--json", action="store_true",
                          help="one JSON object per line; the last one is the coverage")
    backtest.set_defaults(handler=cmd_forecast_backtest)
    evaluate = forecast_commands.add_parser(
        "evaluate", help="Monitoriza's estimates against predict_linear on timestamp,value CSVs")
    evaluate.add_argument("--csv", type=Path, required=True, action="append", metavar="FILE",
                          help="a history; repeat for several (their counts are pooled)")
    evaluate.add_argument("--threshold-quantile", type=_quantile, default=0.99, metavar="Q",
                          help="each series' failure threshold: this quantile of its values "
                               "(default 0.99; with --direction below, the 1 - Q quantile)")
    evaluate.add_argument("--direction", choices=["above", "below"], default="above",
                          help="failure is the value rising to the threshold (above, the "
                               "default) or falling to it (below: free space, free memory)")
    evaluate.add_argument("--every", type=positive_duration, default=3600.0,
                          metavar="DURATION", help="time between replayed forecasts "
                                                   "(default 1h)")
    evaluate.add_argument("--horizon", type=duration, default=14400.0, metavar="DURATION",
                          help="alarm when the failure is forecast within it (default 4h)")
    evaluate.add_argument("--window", type=duration, default=21600.0, metavar="DURATION",
                          help="history each forecast sees (default 6h)")
    evaluate.add_argument("--target-false-alarms-per-day", type=positive_float, default=1.0,
                          metavar="X", help="the false-alarm rate the recommended estimate "
                                            "must not exceed (default 1)")
    evaluate.add_argument("--json", action="store_true", help="one JSON object")
    evaluate.set_defaults(handler=cmd_forecast_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitoriza",
        description="Prometheus/Alertmanager-centric monitor and auto-healer.")
    parser.add_argument("--version", action="version", version=f"monitoriza {__version__}")
    logs.add_arguments(parser)  # --log-level, --log-format
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(handler=cmd_check_config)

    exporter = commands.add_parser("exporter", help="run the probes and serve /metrics")
    exporter.add_argument("--config", type=Path, required=True, metavar="FILE")
    exporter.add_argument("--listen", type=_listen, metavar="HOST:PORT",
                          help="overrides exporter.listen from the configuration")
    exporter.set_defaults(handler=cmd_exporter)

    responder = commands.add_parser("responder", help="run the Alertmanager webhook responder")
    responder.add_argument("--config", type=Path, required=True, metavar="FILE")
    responder.add_argument("--listen", type=_listen, metavar="HOST:PORT",
                           help="overrides responder.listen from the configuration")
    responder.set_defaults(handler=cmd_responder)

    audit = commands.add_parser("audit", help="verify or export the audit chain")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_commands.add_parser(
        "verify", help="check every entry and the signed checkpoints; exit 1 if broken")
    verify.add_argument("--config", type=Path, required=True, metavar="FILE")
    verify.add_argument("--public-key", type=Path, metavar="FILE",
                        help="check the checkpoints with this public key (PEM) instead of the "
                             "one next to the signing key")
    verify.add_argument("--key-fingerprint", metavar="FP",
                        help="fail unless the key in use has this fingerprint (SHA256:...)")
    verify.add_argument("--prometheus", metavar="URL",
                        help="compare the chain with the heads this Prometheus scraped")
    verify.add_argument("--prometheus-lookback", type=duration, default=30 * 86400.0,
                        metavar="DURATION", help="how far back to read (default 30d)")
    verify.add_argument("--prometheus-selector", default="", metavar="MATCHERS",
                        help='label matchers for the responder\'s series, e.g. job="responder"')
    verify.set_defaults(handler=cmd_audit)
    export = audit_commands.add_parser("export", help="print entries as JSON lines")
    export.add_argument("--config", type=Path, required=True, metavar="FILE")
    export.add_argument("--since", metavar="WHEN",
                        help="a duration (7d), an RFC 3339 time, or seq:N")
    export.set_defaults(handler=cmd_audit)

    _add_forecast_commands(commands)

    rules = commands.add_parser("rules", help="work with the Prometheus rule files")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    render = rules_commands.add_parser(
        "render", help="write copies of the rules with every duration scaled")
    render.add_argument("--time-scale", type=positive_float, required=True, metavar="X",
                        help="multiply every duration by X (0.02 turns 5m into 6s)")
    render.add_argument("--out", type=Path, required=True, metavar="DIR")
    render.add_argument("--rules", type=Path, default=default_rules_dir(), metavar="DIR",
                        help="the source rule files (default: %(default)s)")
    render.set_defaults(handler=cmd_rules_render)
    _add_stack_commands(commands)
    _add_readiness_commands(commands)
    _add_journal_commands(commands)
    return parser



def _add_journal_commands(
        commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``journal dead-letters`` and ``journal replay``."""
    from monitoriza.responder.dead_letter_commands import journal_id  # noqa: PLC0415

    journal = commands.add_parser("journal", help="the responder's journal: dead letters")
    journal_commands = journal.add_subparsers(dest="journal_command", required=True,
                                              metavar="COMMAND")
    dead = journal_commands.add_parser(
        "dead-letters", help="list the alerts given up after failing every attempt")
    dead.add_argument("--config", type=Path, required=True, metavar="FILE")
    dead.add_argument("--json", action="store_true", help="one JSON object per line")
    dead.set_defaults(handler=cmd_journal)
    replay = journal_commands.add_parser(
        "replay", help="put dead letters back to be processed (after fixing the cause)")
    replay.add_argument("--config", type=Path, required=True, metavar="FILE")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ids", type=journal_id, action="append", metavar="N",
                       help="a journal id (repeat for several)")
    which.add_argument("--all", action="store_true", help="every dead letter")
    replay.set_defaults(handler=cmd_journal)


def _add_readiness_commands(
        commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``report``, ``lint`` and ``drill``."""
    report = commands.add_parser(
        "report", help="a reliability report (HTML or JSON) from Prometheus and the "
                       "responder's store, with a verdict per service")
    report.add_argument("--config", type=Path, required=True, metavar="FILE")
    report.add_argument("--since", type=duration, default=7 * 86400.0, metavar="DURATION",
                        help="the period reported (default 7d)")
    report.add_argument("--out", type=Path, metavar="FILE",
                        help="where to write it (default report.html or report.json; - for "
                             "standard output)")
    report.add_argument("--format", choices=["html", "json"], default="html")
    report.add_argument("--prometheus", metavar="URL",
                        help="default: exporter.prometheus_url from the configuration")
    report.set_defaults(handler=cmd_report)

    lint = commands.add_parser(
        "lint", help="find gaps in the monitoring setup (services without probes, critical "
                     "alerts that reach no one, playbooks without verify, ...); exit 1 on errors")
    lint.add_argument("--config", type=Path, required=True, metavar="FILE")
    lint.add_argument("--alertmanager", type=Path, default=default_alertmanager_file(),
                      metavar="FILE", help="Alertmanager configuration (default: %(default)s)")
    lint.add_argument("--rules", type=Path, default=default_rules_dir(), metavar="DIR",
                      help="Prometheus rule files (default: %(default)s)")
    lint.add_argument("--prometheus", metavar="URL",
                      help="also report components Prometheus sees as unknown")
    lint.add_argument("--format", choices=["text", "json"], default="text")
    lint.set_defaults(handler=cmd_lint)
    add_drill_commands(commands)


def _add_stack_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``up`` and ``demo``."""
    up = commands.add_parser(
        "up", help="run the whole stack on this machine (Prometheus, Alertmanager, exporter, "
                   "responder; with --demo a simulated Conecta Plus)")
    up.add_argument("--config", type=Path, metavar="FILE", help="your services")
    up.add_argument("--demo", action="store_true",
                    help="a simulated Conecta Plus, with rules twenty times faster")
    up.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, metavar="DIR",
                    help="generated files, stores and logs (default: %(default)s)")
    up.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, metavar="PORT",
                    help="Prometheus's port; the others follow it (default: %(default)s)")
    up.add_argument("--time-scale", type=positive_float, metavar="X",
                    help="multiply every rule and Alertmanager timer by X "
                         "(default: 1, or 0.05 with --demo)")
    up.add_argument("--docker-host", metavar="URL",
                    help="Docker engine for the demo's container (default: $DOCKER_HOST, "
                         "then the local socket)")
    up.set_defaults(handler=cmd_up)

    demo = commands.add_parser("demo", help="drive the demo started by monitoriza up --demo")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True, metavar="COMMAND")
    fault = demo_commands.add_parser(
        "fault", help="inject a fault: down, slow, unknown-component, fill-disk, "
                      "break-checkins; or clear")
    fault.add_argument("service", metavar="SERVICE")
    fault.add_argument("kind", metavar="KIND",
                       help="down, slow, unknown-component, fill-disk, break-checkins or clear")
    fault.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, metavar="DIR")
    fault.set_defaults(handler=cmd_demo_fault)
    serve = demo_commands.add_parser("serve", help="serve the simulated services (monitoriza "
                                                   "up starts it)")
    serve.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, metavar="DIR")
    serve.set_defaults(handler=cmd_demo_serve)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
