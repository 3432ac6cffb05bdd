"""Prometheus metrics. Each daemon owns a registry; `serve()` exposes it on /metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


@dataclass
class Metrics:
    registry: CollectorRegistry
    applied_rows: Counter
    transactions: Counter
    dead_letters: Counter
    conflicts: Counter
    retries: Counter
    lag: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> "Metrics":
        r = registry or CollectorRegistry()
        d = ["direction"]
        return cls(
            registry=r,
            applied_rows=Counter("bridge_applied_rows", "Rows applied to the target", d, registry=r),
            transactions=Counter("bridge_transactions", "Source transactions applied", d, registry=r),
            dead_letters=Counter("bridge_dead_letters", "Rows sent to the dead-letter table", d, registry=r),
            conflicts=Counter("bridge_conflicts", "Conflicts detected", d, registry=r),
            retries=Counter("bridge_retries", "Reconnects and transaction retries", d, registry=r),
            lag=Gauge("bridge_lag_seconds", "Now minus source commit time of the last applied transaction", d, registry=r),
        )

    @classmethod
    def disabled(cls) -> "Metrics":
        return cls.create()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
