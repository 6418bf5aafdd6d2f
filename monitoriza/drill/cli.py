"""``monitoriza drill plan|run|export|load``: the command line of fire drills.

The plan's inputs (configuration, rule files, Alertmanager and Prometheus configurations) are
named one by one, or all at once with ``--stack RUN_DIR``: the run directory of ``monitoriza
up``, whose files (time-scaled rules included) are what the running stack uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitoriza.argtypes import duration, positive_float, positive_int
from monitoriza.lint import default_alertmanager_file
from monitoriza.timescale import default_rules_dir

EXPORT_FORMATS = ("chaostoolkit",)


def _add_plan_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="your services")
    parser.add_argument("--stack", type=Path, metavar="RUN_DIR",
                        help="take every input from the run directory of monitoriza up "
                             "(RUN_DIR/monitoriza.yml, rules/, alertmanager/, prometheus/)")
    parser.add_argument("--alertmanager", type=Path, metavar="FILE",
                        help="Alertmanager configuration (default: the project's "
                             "alertmanager/alertmanager.yml)")
    parser.add_argument("--rules", type=Path, metavar="DIR",
                        help="Prometheus rule files (default: the project's rules/)")
    parser.add_argument("--prometheus-config", type=Path, metavar="FILE",
                        help="Prometheus configuration, for the scrape and evaluation "
                             "intervals (default: the project's prometheus/prometheus.yml)")


def plan_inputs(args: argparse.Namespace) -> tuple[Path, Path, Path, Path]:
    """(config, alertmanager, rules, prometheus config): the named files, else those of
    ``--stack``, else the project's defaults. SystemExit(2) when no configuration is named."""
    from monitoriza.drill.commands import default_prometheus_file  # noqa: PLC0415

    stack: Path | None = args.stack
    config = args.config or (stack / "monitoriza.yml" if stack else None)
    if config is None:
        sys.stderr.write(f"monitoriza drill {args.drill_command}: give --config FILE "
                         "or --stack RUN_DIR\n")
        raise SystemExit(2)
    alertmanager = args.alertmanager or (
        stack / "alertmanager" / "alertmanager.yml" if stack else default_alertmanager_file())
    rules = args.rules or (stack / "rules" if stack else default_rules_dir())
    prometheus = args.prometheus_config or (
        stack / "prometheus" / "prometheus.yml" if stack else default_prometheus_file())
    return config, alertmanager, rules, prometheus


def cmd_drill_plan(args: argparse.Namespace) -> int:
    from monitoriza.drill.commands import plan_command  # noqa: PLC0415 - only this command

    config, alertmanager, rules, prometheus = plan_inputs(args)
    return plan_command(config, alertmanager, rules, prometheus,
                        out=sys.stdout, err=sys.stderr, as_json=args.json)


def cmd_drill_run(args: argparse.Namespace) -> int:
    from monitoriza.drill.run import RunOptions, run_command  # noqa: PLC0415

    config, alertmanager, rules, prometheus = plan_inputs(args)
    options = RunOptions(
        config=config, rules=rules, alertmanager=alertmanager, prometheus_config=prometheus,
        only=tuple(args.only or ()), yes=args.yes, time_limit=args.time_limit,
        max_fill_bytes=args.max_fill_mb * 1024 * 1024, out=args.out,
        poll_interval=args.poll_interval, prometheus_url=args.prometheus_url,
        alertmanager_url=args.alertmanager_url, responder_url=args.responder_url,
        as_json=args.json, under_load=args.under_load, load_users=args.load_users,
        load_rate=args.load_rate, load_slo=args.load_slo)
    return run_command(options, out=sys.stdout, err=sys.stderr)


def cmd_drill_export(args: argparse.Namespace) -> int:
    from monitoriza.drill.exporting import export_command  # noqa: PLC0415

    config, alertmanager, rules, prometheus = plan_inputs(args)
    return export_command(config, alertmanager, rules, prometheus, only=tuple(args.only or ()),
                          out_dir=args.out_dir, time_limit=args.time_limit,
                          max_fill_bytes=args.max_fill_mb * 1024 * 1024,
                          out=sys.stdout, err=sys.stderr)


def cmd_drill_load(args: argparse.Namespace) -> int:
    # Never imports Locust here: the load runs in a child process (see monitoriza.drill.load).
    from monitoriza.drill.load import LoadOptions, load_command  # noqa: PLC0415

    options = LoadOptions(args.config, args.flow, args.users, args.rate, args.duration,
                          slo=args.slo, out=args.out, as_json=args.json)
    return load_command(options, out=sys.stdout, err=sys.stderr)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", metavar="SERVICE[:FAULT[:TARGET]]",
                        help="only these experiments (repeatable), e.g. redis or "
                             "redis:process_kill or backend:dependency_outage:redis")
    parser.add_argument("--time-limit", type=duration, metavar="DURATION",
                        help="the most one experiment may take before it is aborted and "
                             "restored (default: twice its latest deadline, at least 1m)")
    parser.add_argument("--max-fill-mb", type=positive_int, default=1024, metavar="MB",
                        help="disk_fill writes at most this much (default: %(default)s)")


def add_drill_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``drill plan``, ``run``, ``export`` and ``load``."""
    drill = commands.add_parser("drill", help="fire drills: prove every fault is detected, "
                                              "routed and healed in time")
    drill_commands = drill.add_subparsers(dest="drill_command", required=True,
                                          metavar="COMMAND")
    plan = drill_commands.add_parser(
        "plan", help="the fault matrix: expected alerts, receivers, root cause, playbook and "
                     "deadlines per service and fault (injects nothing)")
    _add_plan_inputs(plan)
    plan.add_argument("--json", action="store_true", help="the whole matrix as JSON")
    plan.set_defaults(handler=cmd_drill_plan)

    run = drill_commands.add_parser(
        "run", help="inject the plan's faults on the real estate, one at a time, and judge "
                    "detection, routing, healing and data loss (needs --yes)")
    _add_plan_inputs(run)
    _add_selection(run)
    run.add_argument("--yes", action="store_true",
                     help="really inject the faults (without it the plan is shown)")
    run.add_argument("--poll-interval", type=positive_float, default=0.5, metavar="SECONDS",
                     help="how often the pipeline is observed (default: %(default)s)")
    run.add_argument("--prometheus-url", metavar="URL",
                     help="default: the configuration's exporter.prometheus_url")
    run.add_argument("--alertmanager-url", metavar="URL",
                     help="default: the configuration's responder.healing.alertmanager_url")
    run.add_argument("--responder-url", metavar="URL",
                     help="default: http:// and the configuration's responder.listen")
    run.add_argument("--out", type=Path, metavar="FILE",
                     help="results JSON (default: drills/drill-run-TIME.json beside the "
                          "configuration; the HTML matrix is written beside it)")
    run.add_argument("--json", action="store_true", help="print the results as JSON")
    run.add_argument("--under-load", metavar="FLOW",
                     help="drive this flow with drill load (Locust) for the whole drill")
    run.add_argument("--load-users", type=positive_int, default=5, metavar="N",
                     help="with --under-load (default: %(default)s)")
    run.add_argument("--load-rate", type=positive_float, default=2.0, metavar="R",
                     help="flow runs per second with --under-load (default: %(default)s)")
    run.add_argument("--load-slo", metavar="OBJECTIVES",
                     help="the load's --slo, judged over the whole drill")
    run.set_defaults(handler=cmd_drill_run)

    export = drill_commands.add_parser(
        "export", help="write the plan's experiments as Chaos Toolkit experiments, one file "
                       "each, for `chaos run`")
    _add_plan_inputs(export)
    _add_selection(export)
    export.add_argument("--format", choices=EXPORT_FORMATS, default="chaostoolkit")
    export.add_argument("--out-dir", type=Path, metavar="DIR",
                        help="default: drills/chaostoolkit/ beside the configuration")
    export.set_defaults(handler=cmd_drill_export)

    load = drill_commands.add_parser(
        "load", help="drive one flow at a fixed rate with Locust: per-step requests, failures "
                     "and percentiles; exit 1 when an SLO is missed")
    load.add_argument("--config", type=Path, required=True, metavar="FILE")
    load.add_argument("--flow", required=True, metavar="NAME", help="a flow of the configuration")
    load.add_argument("--users", type=positive_int, required=True, metavar="N",
                      help="concurrent simulated users")
    load.add_argument("--rate", type=positive_float, required=True, metavar="R",
                      help="flow runs per second, across all users")
    load.add_argument("--duration", type=duration, required=True, metavar="DURATION",
                      help="how long to drive it, e.g. 30s or 5m")
    load.add_argument("--slo", metavar="OBJECTIVES",
                      help="e.g. p95=300ms,errors=1%%: p50/p95/p99 bound every step, errors "
                           "the share of failed flow runs")
    load.add_argument("--out", type=Path, metavar="FILE",
                      help="where to store the results as JSON (default: "
                           "drills/load-FLOW-TIME.json beside the configuration)")
    load.add_argument("--json", action="store_true", help="print the results as JSON")
    load.set_defaults(handler=cmd_drill_load)
