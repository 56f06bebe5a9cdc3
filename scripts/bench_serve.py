"""Benchmark `textgen serve` on loopback: streaming clients at 1, 8, 64 and 256 at once against the
same model's in-process batched sampling (measured in this run, at the same batch size), time to
first character and between characters, memory with 256 streams open, autocomplete latency over
HTTP, and a soak of requests with random settings and random disconnects. Prints JSON; asserts
nothing about time.

    OMP_NUM_THREADS=1 python scripts/bench_serve.py --quick   # server on one core, clients on the other
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import os
import subprocess
import sys
import time

import harness
import httpx

import textgen

PROMPT = "ROMEO:\n"


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def start_server(models: list[str], max_streams: int, max_queue: int, core: int | None
                 ) -> tuple[subprocess.Popen, str]:
    """`textgen.serve.serve` in a subprocess on a free loopback port, pinned to `core` when given;
    (process, base url)."""
    code = ("import sys; from textgen.requests import ServeRequest; from textgen.serve import serve; "
            f"serve(ServeRequest(model={tuple(models)!r}, port=0, max_streams={max_streams}, "
            f"max_queue={max_queue}, max_tokens=100000, device='cpu'))")
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, preexec_fn=pin)
    line = process.stderr.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"the server did not start: {line}{process.stderr.read()}")
    return process, match.group(1)


async def one_stream(client: httpx.AsyncClient, url: str, body: dict, record: dict, stop_after: int | None = None):
    """One streaming completion: characters, time to the first, gaps between arrivals; closes early
    after `stop_after` events (a client that leaves)."""
    started = time.perf_counter()
    last, chars, events = None, 0, 0
    async with client.stream("POST", url + "/v1/completions", json=body) as reply:
        record["status"].append(reply.status_code)
        if reply.status_code != 200:
            await reply.aread()
            return 0
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line[6:])
            got = sum(len(choice["text"]) for choice in data.get("choices", ()))
            if not got:
                continue
            now = time.perf_counter()
            if last is None:
                record["first"].append(now - started)
            else:
                record["gaps"].append((now - last) / got)  # several characters in one read share the gap
            last, chars, events = now, chars + got, events + 1
            if stop_after is not None and events >= stop_after:
                break
    return chars


async def streams(client: httpx.AsyncClient, url: str, model: str, count: int, length: int, server_pid: int,
                  record: dict) -> dict:
    """`count` streams at once; adds their statuses, first-character times and gaps to `record`."""
    peak = [0.0]

    async def watch():
        while True:
            peak[0] = max(peak[0], rss_mb(server_pid))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    bodies = [{"model": model, "prompt": PROMPT, "max_tokens": length, "seed": i, "stream": True}
              for i in range(count)]
    chars = await asyncio.gather(*(one_stream(client, url, body, record) for body in bodies))
    seconds = time.perf_counter() - started
    watcher.cancel()
    return {"chars_per_second": sum(chars) / seconds, "server_rss_peak_mb": peak[0]}


async def rounds(url: str, model: str, count: int, length: int, server_pid: int, repeats: int) -> dict:
    """`repeats` rounds of `count` streams served, each followed by the same batch in-process: on a
    machine whose speed drifts, each ratio compares runs a few seconds apart."""
    record = {"status": [], "first": [], "gaps": []}
    served, baseline = [], []
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=count + 8)
    for _ in range(repeats):
        async with httpx.AsyncClient(limits=limits, timeout=600) as client:
            served.append(await streams(client, url, model, count, length, server_pid, record))
        baseline.append(in_process(model, count, length, runs=1)["chars_per_second"])
    ratios = [run["chars_per_second"] / base for run, base in zip(served, baseline)]
    return {"streams": count, "rounds": repeats,
            "chars_per_second": round(harness.median([run["chars_per_second"] for run in served]), 1),
            "in_process_chars_per_second": round(harness.median(baseline), 1),
            "ratio_to_in_process": round(harness.median(ratios), 3), "ratios": sorted(round(r, 3) for r in ratios),
            "first_char_ms": {"p50": _ms(percentile(record["first"], 0.5)), "p99": _ms(percentile(record["first"], 0.99))},
            "between_chars_ms": {"p50": _ms(percentile(record["gaps"], 0.5)), "p99": _ms(percentile(record["gaps"], 0.99))},
            "server_rss_peak_mb": round(max(run["server_rss_peak_mb"] for run in served), 1),
            "non_200": sum(s != 200 for s in record["status"])}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 3)


def in_process(model: str, count: int, length: int, runs: int = 3) -> dict:
    """The same sampling without a server: one batch of `count` samples, the median of `runs` runs."""
    generator = textgen.load(model, device="cpu")
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        chars = sum(len(chunk.text) for chunk in generator.chunks(PROMPT, length=length, num_samples=count, seed=0,
                                                                  keep_text=False))
        rates.append(chars / (time.perf_counter() - started))
    return {"batch": count, "chars_per_second": round(harness.median(rates), 1)}


async def autocomplete(url: str, requests: int) -> dict:
    prefix = "The history of the c"  # 20 characters
    times = []
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(requests):
            started = time.perf_counter()
            reply = await client.post(url + "/v1/complete", json={"model": "english", "prefix": prefix, "top": 5})
            times.append(time.perf_counter() - started)
            reply.raise_for_status()
    generator = textgen.load("english", device="cpu")
    direct = []
    for _ in range(requests):
        started = time.perf_counter()
        generator.complete(prefix, top=5)
        direct.append(time.perf_counter() - started)
    return {"model": "english", "prefix_chars": len(prefix), "requests": requests,
            "p50_ms": _ms(percentile(times, 0.5)), "p99_ms": _ms(percentile(times, 0.99)),
            "in_process_p50_ms": _ms(percentile(direct, 0.5)),
            "top": [c["text"] for c in reply.json()["completions"]]}


async def soak(url: str, model: str, requests: int, concurrency: int, server_pid: int, seed: int = 0) -> dict:
    """`requests` completions with random settings, `concurrency` at a time, a third of the streams
    dropped early; status counts and the server's memory before and after."""
    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    before = rss_mb(server_pid)
    record = {"status": [], "first": [], "gaps": []}

    async def one(client: httpx.AsyncClient):
        body = {"model": model, "prompt": rng.choice([PROMPT, "\n", "To be", "KING:\n" * rng.randint(1, 100)]),
                "max_tokens": rng.randint(1, 200), "temperature": rng.choice([0, 0.5, 1.0, 1.5]),
                "seed": rng.randint(0, 1000)}
        if body["temperature"]:
            body.update({"top_k": rng.choice([None, 5, 40]), "top_p": rng.choice([1.0, 0.9]),
                         "n": rng.randint(1, 3), "repetition_penalty": rng.choice([1.0, 1.2])})
        if rng.random() < 0.3:
            body["stop"] = rng.choice(["\n", ["e", "."], "the"])
        if rng.random() < 0.6:
            body["stream"] = True
            await one_stream(client, url, body, record, stop_after=rng.randint(1, 20) if rng.random() < 0.33 else None)
        else:
            reply = await client.post(url + "/v1/completions", json=body)
            record["status"].append(reply.status_code)

    quarters = []  # the server's memory after each quarter of the requests: a leak keeps climbing
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        pending = set()
        for sent in range(requests):
            if sent and sent % max(requests // 4, 1) == 0:
                quarters.append(round(rss_mb(server_pid), 1))
            if len(pending) >= concurrency:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.add(asyncio.create_task(one(client)))
        await asyncio.gather(*pending)
    for status in record["status"]:
        statuses[status] = statuses.get(status, 0) + 1
    await asyncio.sleep(1)  # let the server drop the last streams
    after = rss_mb(server_pid)
    return {"requests": requests, "concurrency": concurrency, "statuses": statuses,
            "server_5xx": sum(count for status, count in statuses.items() if status >= 500),
            "rss_before_mb": round(before, 1), "rss_quarters_mb": quarters, "rss_after_mb": round(after, 1),
            "rss_change": round(after / before - 1, 4),
            "rss_change_after_first_quarter": round(after / quarters[0] - 1, 4) if quarters else None}


def main() -> None:
    # no --threads: the server is another process; OMP_NUM_THREADS sets both it and the baseline
    parser = harness.parser(__doc__, repeats=5, thread_option=False)
    parser.add_argument("--model", default="shakespeare", help="bundled language model for the streams")
    parser.add_argument("--length", type=int, default=400, help="characters per stream (default: %(default)s; "
                                                                 "quick 150)")
    parser.add_argument("--soak", type=int, default=10_000, help="soak requests (default: %(default)s; quick 500)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--autocomplete", type=int, default=100, help="autocomplete requests, over HTTP and "
                                                                      "in-process (default: %(default)s; quick 30)")
    args = harness.parse(parser, quick={"length": 150, "soak": 500, "autocomplete": 30, "repeats": 1})
    length, soak_requests = args.length, args.soak
    if (not 1 <= length <= 10_000 or not 0 <= soak_requests <= 100_000 or max(args.counts) > 512
            or args.autocomplete < 1):
        raise SystemExit("keep --length within 1..10000, --soak within 0..100000, counts at most 512 "
                         "and --autocomplete at least 1")
    # the server on a core of its own, as the in-process baseline has one: the clients that load it
    # (and the baseline, measured while they wait) run on another, where the machine has two
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})
    results: dict = {"model": args.model, "length": length, "server_core": server_core, "client_core": client_core}
    process, url = start_server([args.model, "english"], max(args.counts), 1024, server_core)
    try:
        results["server_rss_idle_mb"] = round(rss_mb(process.pid), 1)
        results["streams"] = []
        for count in args.counts:
            served = asyncio.run(rounds(url, args.model, count, length, process.pid, args.repeats))
            served["server_rss_beyond_idle_mb"] = round(served["server_rss_peak_mb"] - results["server_rss_idle_mb"], 1)
            results["streams"].append(served)
            harness.progress(served)
        results["autocomplete"] = asyncio.run(autocomplete(url, args.autocomplete))
        harness.progress(results["autocomplete"])
        if soak_requests:
            results["soak"] = asyncio.run(soak(url, args.model, soak_requests, 32, process.pid))
    finally:
        process.terminate()
        process.wait(10)
    harness.report(args, results)


if __name__ == "__main__":
    main()
