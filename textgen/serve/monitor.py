"""The server's counters in Prometheus' text format, written by hand: a handful of series needs no
client library."""

from __future__ import annotations

import bisect
import collections
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Monitor:
    """Requests by route and status, request latency by route, and per model the streams generating,
    the requests queued and the characters generated."""

    def __init__(self):
        self.lock = threading.Lock()  # engine threads report while the event loop reads
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.latency: dict[str, list[int]] = {}  # route -> count per bucket (the last: above them all)
        self.latency_sum: collections.Counter[str] = collections.Counter()
        self.streams: dict[str, int] = {}
        self.queued: dict[str, int] = {}
        self.characters: collections.Counter[str] = collections.Counter()

    def request(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[route, status] += 1
            counts = self.latency.setdefault(route, [0] * (len(LATENCY_BUCKETS) + 1))
            counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.latency_sum[route] += seconds

    def step(self, model: str, streams: int, queued: int, characters: int) -> None:
        with self.lock:
            self.streams[model], self.queued[model] = streams, queued
            self.characters[model] += characters

    def text(self) -> str:
        """Every series, in the exposition format."""
        lines = ["# HELP textgen_requests_total HTTP requests by route and status",
                 "# TYPE textgen_requests_total counter"]
        with self.lock:
            for (route, status), count in sorted(self.requests.items()):
                lines.append(f'textgen_requests_total{{route="{route}",status="{status}"}} {count}')
            lines += ["# HELP textgen_request_seconds time to the response's start (a stream's first byte)",
                      "# TYPE textgen_request_seconds histogram"]
            for route, counts in sorted(self.latency.items()):
                total = 0
                for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), counts):
                    total += count
                    lines.append(f'textgen_request_seconds_bucket{{route="{route}",le="{bound}"}} {total}')
                lines.append(f'textgen_request_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}')
                lines.append(f'textgen_request_seconds_count{{route="{route}"}} {total}')
            for name, kind, help, values in (
                    ("textgen_active_streams", "gauge", "samples being generated", self.streams),
                    ("textgen_queue_depth", "gauge", "requests waiting for a stream slot", self.queued),
                    ("textgen_characters_generated_total", "counter", "characters sent to clients", self.characters)):
                lines += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
                lines += [f'{name}{{model="{_escaped(model)}"}} {value}' for model, value in sorted(values.items())]
        return "\n".join(lines) + "\n"


def _escaped(label: str) -> str:
    """A label value as the exposition format quotes it (a model may be a path with any characters)."""
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
