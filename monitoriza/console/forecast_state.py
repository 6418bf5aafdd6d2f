"""What the forecasts page shows: each forecast's published times to failure and its history.

The times are what the exporter published and Prometheus scraped
(``monitoriza_time_to_failure_seconds{forecast, service, estimate=lower|median|upper}``, see
docs/forecasting.md), so the page shows what the ``FailureForecast`` alert sees; the history is
the forecast's own expression over its window. A forecast Prometheus knows but the
configuration does not (another exporter's, or one since removed) is listed with its times
and without a chart. Prometheus being unreachable is a notice on the page, never an error.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from monitoriza.config.schema import Config, ForecastSpec
from monitoriza.console.forecast_chart import Estimates, Series, forecast_svg
from monitoriza.report.collect import PrometheusReader, ReportError

TTF_METRIC = "monitoriza_time_to_failure_seconds"
ESTIMATES = ("lower", "median", "upper")
MAX_POINTS = 240  # per series in a chart: enough for its width, cheap to query
MAX_SERIES = 7  # lines drawn per chart; the most urgent series is among them


@dataclass(frozen=True, slots=True)
class ForecastPanel:
    name: str
    service: str
    spec: ForecastSpec | None  # None: Prometheus has it, the configuration does not
    estimates: Estimates | None  # None: Prometheus has no complete set for it
    chart: Markup | None
    notice: str | None  # why there is no chart (a failed query, no history)

    @property
    def urgency(self) -> float:
        return self.estimates.median if self.estimates is not None else math.inf


def published(samples: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, Estimates]]:
    """``{forecast: (service, estimates)}`` from an instant query of :data:`TTF_METRIC`: of
    a forecast over many series, the series with the soonest median; a series lacking one
    of the three estimates is left out."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, float]] = defaultdict(dict)
    services: dict[str, str] = {}
    for sample in samples:
        labels = sample["metric"]
        name, estimate = labels.get("forecast"), labels.get("estimate")
        if not name or estimate not in ESTIMATES:
            continue
        series = tuple(sorted((key, value) for key, value in labels.items()
                              if key not in {"__name__", "estimate"}))
        found[(name, series)][estimate] = float(sample["value"][1])
        services[name] = labels.get("service", "")
    chosen: dict[str, Estimates] = {}
    for (name, _), values in sorted(found.items()):
        if len(values) != len(ESTIMATES):
            continue
        estimates = Estimates(values["lower"], values["median"], values["upper"])
        if name not in chosen or estimates.median < chosen[name].median:
            chosen[name] = estimates
    return {name: (services[name], estimates) for name, estimates in chosen.items()}


def label_texts(label_sets: list[Mapping[str, str]]) -> list[str]:
    """Each series named by the labels that tell it from the others (``job`` and
    ``instance``, the same on every series, would only crowd the legend)."""
    shared = set.intersection(*(set(labels.items()) for labels in label_sets)) \
        if len(label_sets) > 1 else set()
    texts = []
    for labels in label_sets:
        inner = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items())
                          if key != "__name__" and (key, value) not in shared)
        texts.append("{" + inner + "}")
    return texts


def history(reader: PrometheusReader, spec: ForecastSpec, now: float) -> list[Series]:
    """The expression's series over its window, at most :data:`MAX_POINTS` points each."""
    step = max(spec.step, spec.window / MAX_POINTS)
    result = reader.range(spec.expr, now - spec.window, now, step)
    names = label_texts([item.get("metric", {}) for item in result])
    return [Series(name, tuple((float(t), float(v)) for t, v in item.get("values", [])))
            for name, item in zip(names, result, strict=True)]


def most_urgent(series: list[Series], direction: str) -> list[Series]:
    """At most :data:`MAX_SERIES` series, those whose last value is nearest failure first."""
    def last(one: Series) -> float:
        value = one.points[-1][1] if one.points else math.nan
        if not math.isfinite(value):
            return math.inf
        return -value if direction == "above" else value

    return sorted(series, key=last)[:MAX_SERIES]


def panel(name: str, spec: ForecastSpec, estimates: Estimates | None,
          reader: PrometheusReader | None, now: float) -> ForecastPanel:
    if reader is None:
        return ForecastPanel(name, spec.service, spec, estimates, None,
                             "no history: Prometheus is unreachable")
    try:
        series = most_urgent(history(reader, spec, now), spec.direction)
    except ReportError as exc:
        return ForecastPanel(name, spec.service, spec, estimates, None, str(exc))
    if not any(one.points for one in series):
        return ForecastPanel(name, spec.service, spec, estimates, None,
                             f"Prometheus has no history of {spec.expr} in the last "
                             "window")
    chart = forecast_svg(series, now=now, window=spec.window, horizon=spec.horizon,
                         threshold=spec.threshold, direction=spec.direction,
                         estimates=estimates, title=f"{name}: history and projected band")
    return ForecastPanel(name, spec.service, spec, estimates, chart, None)


def read_forecasts(config: Config, reader: PrometheusReader,
                   now: float) -> tuple[list[ForecastPanel], str | None]:
    """Every forecast's panel, most urgent first, and a notice when Prometheus failed."""
    notice = None
    try:
        times = published(reader.instant(TTF_METRIC, now))
        usable: PrometheusReader | None = reader
    except ReportError as exc:
        times, usable = {}, None
        notice = f"Prometheus unreachable: {exc}"
    panels = [panel(name, spec, times.get(name, ("", None))[1], usable, now)
              for name, spec in config.forecasts.items()]
    panels += [ForecastPanel(name, service, None, estimates, None,
                             "not in this configuration: no expression to chart")
               for name, (service, estimates) in times.items() if name not in config.forecasts]
    return sorted(panels, key=lambda one: (one.urgency, one.name)), notice
