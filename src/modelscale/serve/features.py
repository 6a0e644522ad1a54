"""Features of the server that live in other packages: their stages, recorders and routes.

The serving core knows the interface, not the features: a package that adds to the server (the
request log and SLOs, drift sketches, experiments, redaction) declares a ``FeatureFactory`` under
the entry-point group ``modelscale.serve.features`` in its distribution's metadata, and
``build_front`` builds every declared feature for each server, the Ray ingress included. So the
front never imports them, and a feature is written once for every backend.

A feature gives:
- stage factories, placed before or after a named stage of the pipeline;
- recorders, which get every finished inference request off the request path;
- routes: paths it answers (``GET /v2/logs``, ``/dashboard``...), each public or behind the
  server's API keys, and model routes: ``/v2/models/{name}[/versions/{v}]/{tail}`` for a tail
  it names (``POST .../feedback``), behind the keys. A route names the scope a key needs
  (``Route.scope``); one that names none needs ``admin``, so that a route nobody thought about
  is closed, not open;
- ``close()``, called when the server stops, after the recorders' queues are drained.

Features never import each other; when one has news another may use (the monitor joined a
feedback label to a request; an experiment wants accuracy per arm), it publishes it on the
server's ``Events`` (``StageContext.events``) and whoever subscribed gets it, in the same thread.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

from modelscale.errors import InvalidInput
from modelscale.serve.keyfile import ADMIN, SCOPES

if TYPE_CHECKING:
    from modelscale.serve.pipeline import Exchange, StageContext, StageFactory
    from modelscale.serve.records import Recorder

__all__ = [
    "DEFAULT_ROUTE_BODY",
    "ENTRY_POINT_GROUP",
    "Events",
    "Feature",
    "FeatureFactory",
    "Route",
    "load_features",
]

log = logging.getLogger("modelscale.serve")

ENTRY_POINT_GROUP = "modelscale.serve.features"


DEFAULT_ROUTE_BODY = 1 << 20


class Events:
    """Notices between the features of one server: topic -> subscribers, called in order.

    A subscriber that fails is logged and skipped: one feature's bug never fails another's
    request. Topics in use: ``feedback`` (the monitor joined labels to a request: ``model``,
    ``version``, ``id``, ``task``, ``rows``, and ``correct`` (share of rows right) or
    ``abs_error`` (mean absolute error)).
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callable[..., None]]] = {}

    def subscribe(self, topic: str, fn: Callable[..., None]) -> None:
        """Call ``fn(**payload)`` for every notice published on ``topic``."""
        self._subscribers.setdefault(topic, []).append(fn)

    def wanted(self, topic: str) -> bool:
        """Whether anyone listens to ``topic`` (publishers skip building payloads otherwise)."""
        return bool(self._subscribers.get(topic))

    def publish(self, topic: str, **payload: object) -> None:
        """Hand ``payload`` to each subscriber of ``topic``."""
        for fn in self._subscribers.get(topic, ()):
            try:
                fn(**payload)
            except Exception:
                log.exception("a subscriber to %r failed", topic)


@dataclass(frozen=True)
class Route:
    """A route a feature answers: ``handler`` reads the exchange and calls ``answer``.

    For a ``POST`` the front has read the body (at most ``max_body_bytes``) into ``ex.body``
    before the handler runs; a model route's ``ex.model`` (and ``ex.version``) come from the path.
    """

    handler: Callable[[Exchange], Awaitable[None]]
    public: bool = False
    """Answered without the API key (a page that carries no data of its own)."""
    methods: tuple[str, ...] = ("GET",)
    """``GET`` (``HEAD`` too) and/or ``POST``."""
    max_body_bytes: int = DEFAULT_ROUTE_BODY
    scope: str | Mapping[str, str] = ADMIN
    """The scope a key needs (``infer``, ``feedback``, ``logs:read``, ``admin``), or one per
    method (``{"GET": "logs:read", "POST": "admin"}``; a method it leaves out needs admin)."""

    def __post_init__(self) -> None:
        named = [self.scope] if isinstance(self.scope, str) else list(self.scope.values())
        for scope in named:
            if scope not in SCOPES:
                raise InvalidInput(
                    f"Route scope {scope!r} is not a scope; expected one of {', '.join(SCOPES)}.",
                    field="scope",
                )

    def scope_for(self, method: str) -> str:
        """The scope a ``method`` request needs (``HEAD`` as ``GET``)."""
        if isinstance(self.scope, str):
            return self.scope
        return self.scope.get("GET" if method == "HEAD" else method, ADMIN)


@dataclass
class Feature:
    """What one feature adds to one server."""

    name: str
    stages: Sequence[StageFactory] = ()
    recorders: Sequence[Recorder] = ()
    routes: Mapping[str, Route] = field(default_factory=dict)
    model_routes: Mapping[str, Route] = field(default_factory=dict)
    """Tail -> route, answered at ``/v2/models/{name}[/versions/{v}]/{tail}``."""
    close: Callable[[], None] | None = None


class FeatureFactory(Protocol):
    """Builds a feature for a server (None when the deployment does not use it)."""

    def __call__(self, context: StageContext) -> Feature | None:
        """The feature for ``context``."""


def load_features() -> list[FeatureFactory]:
    """The feature factories installed packages declare, ordered by entry-point name."""
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    out = []
    for ep in found:
        try:
            out.append(ep.load())
        except Exception as exc:
            raise InvalidInput(
                f"the server feature {ep.name!r} ({ep.value}) cannot be loaded: {exc}",
                field="features",
            ) from exc
    return out
