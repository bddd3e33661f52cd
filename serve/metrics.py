"""Prometheus metrics of one gateway app (its own registry on app.state: no global state)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
WEIGHT_BUCKETS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


OTHER = "other"


def closed_label(value: str | None, known: Collection[str]) -> str:
    """`value` when it is one of `known` (served models, experiment arms), else `other`: a client never
    mints a label (each would be a new series, kept until restart)."""
    if not value:
        return ""
    return value if value in known else OTHER


class EngineCollector(Collector):
    """Reads the engines' state at scrape time (restarts are counted by the supervisor thread). Engines
    are labelled by their position (`engine="0"`), never by URL or PID."""

    def __init__(self, restarts: Callable[[], int],
                 upstreams: Callable[[], list[tuple[str, bool, int]]]) -> None:
        self._restarts = restarts
        self._upstreams = upstreams

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("empathy_engine_restarts", "Restarts of the supervised vLLM child.",
                                  value=self._restarts())
        up = GaugeMetricFamily("empathy_upstream_up", "1 when the vLLM engine is healthy.", labels=["engine"])
        busy = GaugeMetricFamily("empathy_upstream_outstanding", "Requests in flight per engine.",
                                 labels=["engine"])
        for name, healthy, outstanding in self._upstreams():
            up.add_metric([name], 1.0 if healthy else 0.0)
            busy.add_metric([name], float(outstanding))
        yield up
        yield busy


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("empathy_requests", "Completion requests.", ["model", "arm", "status"],
                                registry=r)
        self.errors = Counter("empathy_errors", "Requests that failed, by status code.", ["model", "code"],
                              registry=r)
        self.latency = Histogram("empathy_request_latency_seconds", "End-to-end latency of completions.",
                                 ["model", "arm"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("empathy_ttft_seconds", "Time to the first streamed token.", ["model", "arm"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_ttft = Histogram(
            "empathy_upstream_ttft_seconds", "Time from sending a streamed request to vLLM to its first "
            "token reaching the gateway: a client's time to the first token minus this is the gateway's "
            "share of it (bench/gateway_overhead.py).", buckets=LATENCY_BUCKETS, registry=r)
        self.rows_lost = Counter("empathy_completion_rows_lost", "Completion rows that could not be stored "
                                 "(each is logged with its error; its reply had ended).", registry=r)
        self.router_weight = Histogram("empathy_router_weight", "Blend weight chosen for routed requests.",
                                       ["source"], buckets=WEIGHT_BUCKETS, registry=r)
        # The series of `completed`, by (model, arm) label: `labels()` validates and locks, 1.7 us each.
        self._completed: dict[tuple[str, str], tuple[Counter, Histogram, Histogram]] = {}

    def completed(self, model: str, arm: str, latency: float, ttft: float | None) -> None:
        """A reply delivered (200): its count, latency and, when streamed, time to the first token, under
        closed labels (`closed_label`)."""
        series = self._completed.get((model, arm))
        if series is None:
            series = self._completed[model, arm] = (self.requests.labels(model, arm, "200"),
                                                     self.latency.labels(model, arm),
                                                     self.ttft.labels(model, arm))
        series[0].inc()
        series[1].observe(latency)
        if ttft is not None:
            series[2].observe(ttft)

    def watch_engines(self, collector: EngineCollector) -> None:
        self.registry.register(collector)
