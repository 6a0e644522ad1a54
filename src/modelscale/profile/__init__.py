"""Profiling: what a model is made of (static) and what it costs to run here (dynamic)."""

from __future__ import annotations

from modelscale.profile.api import ProfileOptions, ProfileResult, profile_model
from modelscale.profile.flops import FlopCount, count_flops
from modelscale.profile.plot import plot_profile
from modelscale.profile.static import StaticProfile, static_profile
from modelscale.profile.stats import median_ci, percentiles
from modelscale.profile.sweep import MeasureOptions, SweepPoint, measure_latency

__all__ = [
    "FlopCount",
    "MeasureOptions",
    "ProfileOptions",
    "ProfileResult",
    "StaticProfile",
    "SweepPoint",
    "count_flops",
    "measure_latency",
    "median_ci",
    "percentiles",
    "plot_profile",
    "profile_model",
    "static_profile",
]
