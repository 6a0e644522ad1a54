"""Observe served models: the request log (Parquet, queried with DuckDB), SLO burn rates and
alerts, and the live dashboard, all as parts of the server's request pipeline.

The server builds this package's feature from deploy.yaml (``modelscale.observe.feature``,
declared as a ``modelscale.serve.features`` entry point); the functions here read what it wrote.
The exports load on first use (PEP 562): the command line imports this package at start, and
pyarrow and DuckDB are only needed by the commands that read a log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelscale.lazy import lazy_exports

if TYPE_CHECKING:
    from modelscale.observe.alerts import Alert, AlertDispatcher
    from modelscale.observe.compliance import SloCompliance, slo_compliance
    from modelscale.observe.query import (
        GROUP_KEYS,
        LogQuery,
        LogStats,
        StatsRow,
        connect_log,
        log_stats,
        parse_since,
        query_log,
        recent_records,
        status_range,
    )
    from modelscale.observe.rules import PrometheusRules, prometheus_rules
    from modelscale.observe.schema import LOG_SCHEMA, records_to_table
    from modelscale.observe.slo import AlertEvent, BurnCounter, SloAlert, SloTracker
    from modelscale.observe.storage import LogLocation
    from modelscale.observe.windows import ALERT_PAIRS, WINDOWS_S, AlertPair, window_name
    from modelscale.observe.writer import LogWriter

_EXPORTS = {
    "AlertDispatcher": "modelscale.observe.alerts",
    "Alert": "modelscale.observe.alerts",
    "SloAlert": "modelscale.observe.slo",
    "SloCompliance": "modelscale.observe.compliance",
    "slo_compliance": "modelscale.observe.compliance",
    "GROUP_KEYS": "modelscale.observe.query",
    "LogQuery": "modelscale.observe.query",
    "LogStats": "modelscale.observe.query",
    "StatsRow": "modelscale.observe.query",
    "connect_log": "modelscale.observe.query",
    "log_stats": "modelscale.observe.query",
    "parse_since": "modelscale.observe.query",
    "query_log": "modelscale.observe.query",
    "recent_records": "modelscale.observe.query",
    "status_range": "modelscale.observe.query",
    "PrometheusRules": "modelscale.observe.rules",
    "prometheus_rules": "modelscale.observe.rules",
    "LOG_SCHEMA": "modelscale.observe.schema",
    "records_to_table": "modelscale.observe.schema",
    "AlertEvent": "modelscale.observe.slo",
    "BurnCounter": "modelscale.observe.slo",
    "SloTracker": "modelscale.observe.slo",
    "LogLocation": "modelscale.observe.storage",
    "ALERT_PAIRS": "modelscale.observe.windows",
    "WINDOWS_S": "modelscale.observe.windows",
    "AlertPair": "modelscale.observe.windows",
    "window_name": "modelscale.observe.windows",
    "LogWriter": "modelscale.observe.writer",
}

__all__ = [
    "ALERT_PAIRS",
    "GROUP_KEYS",
    "LOG_SCHEMA",
    "WINDOWS_S",
    "Alert",
    "AlertDispatcher",
    "AlertEvent",
    "AlertPair",
    "BurnCounter",
    "LogLocation",
    "LogQuery",
    "LogStats",
    "LogWriter",
    "PrometheusRules",
    "SloAlert",
    "SloCompliance",
    "SloTracker",
    "StatsRow",
    "connect_log",
    "log_stats",
    "parse_since",
    "prometheus_rules",
    "query_log",
    "recent_records",
    "records_to_table",
    "slo_compliance",
    "status_range",
    "window_name",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
