"""What operators watch: Prometheus metrics for /metrics, and readiness for /readyz.

Under gunicorn, every worker writes its counters to prometheus_client's
multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by gunicorn.conf.py
before any worker starts) and a scrape adds them up. prometheus_client is
imported only here, and only once a worker builds the app, so it always sees
that setting. Figures that belong to no single worker (sessions by status,
the tmux backend) are read at scrape time.
"""
from __future__ import annotations

import os
import resource

import gevent

RSS_INTERVAL_SECONDS = 10.0
# Seconds: from a few milliseconds (a warm start) to the 10 s of a slow rc file.
CREATE_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RTT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    """This worker's instruments, and the scrape."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # One app's own registry (tests build several apps in one process);
        # under gunicorn the values live in the multiprocess files instead.
        self.registry = None if self.multiprocess else CollectorRegistry()
        r = self.registry
        self.connections = Gauge("termweb_connections", "Open terminal connections (viewers included)",
                                 multiprocess_mode="livesum", registry=r)
        self.bytes_in = Counter("termweb_input_bytes", "Bytes clients sent to their terminals",
                                registry=r)
        self.bytes_out = Counter("termweb_output_bytes", "Terminal output bytes sent to clients",
                                 registry=r)
        self.creates = Histogram("termweb_session_create_seconds", "Time to start a new terminal session",
                                 buckets=CREATE_BUCKETS, registry=r)
        self.rtt = Histogram("termweb_echo_rtt_seconds",
                             "Round trips the pages measured with heartbeats", buckets=RTT_BUCKETS,
                             registry=r)
        self.rss = Gauge("termweb_worker_resident_memory_bytes", "Resident memory of each worker",
                         multiprocess_mode="liveall", registry=r)
        self._updater: gevent.Greenlet | None = None

    def start(self) -> None:
        """Keep this worker's memory figure fresh (in a gunicorn worker)."""
        if self._updater is None:
            self._updater = gevent.spawn(self._update_rss)

    def _update_rss(self) -> None:
        while True:
            self.rss.set(_rss_bytes())
            gevent.sleep(RSS_INTERVAL_SECONDS)

    def scrape(self, gateway) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        self.rss.set(_rss_bytes())
        registry = CollectorRegistry()
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(_Forward(self.registry))
        registry.register(_ScrapeTime(gateway))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward:
    """One registry's metrics, inside another."""

    def __init__(self, registry):
        self._registry = registry

    def collect(self):
        return self._registry.collect()


class _ScrapeTime:
    """Metrics read when Prometheus asks: the store's sessions and tmux."""

    def __init__(self, gateway):
        self.gateway = gateway

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        sessions = GaugeMetricFamily("termweb_sessions", "Sessions in the store by status",
                                     labels=["status"])
        store_up = GaugeMetricFamily("termweb_store_up", "1 if the session store answers")
        try:
            counts = self.gateway.session_counts()
        except Exception:  # noqa: BLE001 -- the store is down: say so, and no counts
            store_up.add_metric([], 0)
        else:
            store_up.add_metric([], 1)
            for status, count in sorted(counts.items()):
                sessions.add_metric([status], count)
        yield sessions
        yield store_up
        health = self.gateway.monitor.health()
        labels = ["backend"]
        up = GaugeMetricFamily("termweb_backend_up", "1 if the tmux server answers", labels=labels)
        load = GaugeMetricFamily("termweb_backend_sessions", "tmux sessions on the backend", labels=labels)
        capacity = GaugeMetricFamily("termweb_backend_capacity", "Sessions the backend may hold",
                                     labels=labels)
        probe = GaugeMetricFamily("termweb_backend_probe_seconds", "Time the tmux server took to answer",
                                  labels=labels)
        warm = GaugeMetricFamily("termweb_backend_warm_sessions", "Warm sessions ready on the backend",
                                 labels=labels)
        for backend in health:
            up.add_metric([backend["id"]], 1 if backend["up"] else 0)
            load.add_metric([backend["id"]], backend["sessions"])
            capacity.add_metric([backend["id"]], backend["capacity"])
            probe.add_metric([backend["id"]], backend["probeSeconds"])
            warm.add_metric([backend["id"]], backend.get("warm", 0))
        yield from (up, load, capacity, probe, warm)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
