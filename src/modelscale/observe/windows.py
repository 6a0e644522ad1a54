"""The multi-window, multi-burn-rate alerts of the Google SRE workbook (chapter "Alerting on SLOs").

A burn rate is how fast the error budget is being spent: the error ratio over a window divided by
the budget (1 - objective). At burn rate 1 the budget lasts exactly the SLO period; at 14.4, 2% of
a 30-day budget is gone in one hour. Each alert pairs a long window,
which says the burn is significant, with a short one (1/12 of it), which says it is still going
on, so the alert resets soon after the burn stops.

The server's burn-rate tracker (``modelscale.observe.slo``) and the Prometheus rules
``monitor rules`` writes (``modelscale.observe.rules``) both read this table, so they alert alike.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALERT_PAIRS", "WINDOWS_S", "AlertPair", "window_name"]


@dataclass(frozen=True)
class AlertPair:
    """An alert: both windows burn faster than ``burn_rate``."""

    severity: str
    """'page' (wake someone up) or 'ticket' (look at it in working hours)."""
    burn_rate: float
    long_s: int
    short_s: int

    @property
    def name(self) -> str:
        """'1h/5m': the windows, long first."""
        return f"{window_name(self.long_s)}/{window_name(self.short_s)}"


ALERT_PAIRS: tuple[AlertPair, ...] = (
    AlertPair("page", 14.4, 3_600, 300),
    AlertPair("page", 6.0, 6 * 3_600, 1_800),
    AlertPair("ticket", 1.0, 3 * 86_400, 6 * 3_600),
)
"""The workbook's recommended pairs: page at 14.4x over 1 h and 5 min (2% of a 30-day budget in
an hour) or 6x over 6 h and 30 min (5% in six hours); ticket at 1x over 3 days and 6 h (10% in
three days)."""

WINDOWS_S: tuple[int, ...] = tuple(sorted({w for p in ALERT_PAIRS for w in (p.long_s, p.short_s)}))
"""Every window an alert reads, shortest first: 5m, 30m, 1h, 6h, 3d."""


def window_name(seconds: int) -> str:
    """'5m', '1h', '3d' (Prometheus duration syntax)."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
