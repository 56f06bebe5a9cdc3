"""`textgen serve`: every endpoint in-process, every bad request a 4xx in OpenAI's error shape, a real
uvicorn server driven by the official openai client, and continuous batching that changes no text."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest
import torch
import uvicorn

import textgen
from textgen.config import SampleConfig
from textgen.errors import ConfigError
from textgen.requests import ServeRequest
from textgen.serve import bind, check_host, create_app
from textgen.serve.engine import Engine, Job

PROMPT = "ROMEO:\n"


@pytest.fixture(scope="module")
def models():
    return {name: textgen.load(name, device="cpu") for name in ("shakespeare", "sentiment", "reviews-label")}


def make_app(models, **settings):
    names = tuple(models) if "model" not in settings else settings.pop("model")
    return create_app(ServeRequest(model=names, **settings), {name: models[name] for name in names})


async def post_all(app, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    """The requests sent at once to `app`, their responses in order."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
        return await asyncio.gather(*(client.post(path, json=body) for path, body in requests))


def post(app, path: str, body: dict | None = None, content: bytes | None = None, headers: dict | None = None,
         method: str = "POST") -> httpx.Response:
    async def send():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
            return await client.request(method, path, json=body, content=content, headers=headers)
    return asyncio.run(send())


@pytest.fixture(scope="module")
def app(models):
    app = make_app(models)
    yield app
    app.state.server.close()


def test_completion_matches_the_python_api_for_each_sample_seed(app, models):
    reply = post(app, "/v1/completions", {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 40, "seed": 7,
                                          "n": 2, "temperature": 0.8, "top_k": 20})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    generator = models["shakespeare"]
    expected = [generator.generate(PROMPT, length=40, seed=seed, temperature=0.8, top_k=20) for seed in (7, 8)]
    assert [choice["text"] for choice in body["choices"]] == expected
    assert [choice["finish_reason"] for choice in body["choices"]] == ["length", "length"]
    assert body["object"] == "text_completion" and body["model"] == "shakespeare"
    assert body["usage"] == {"prompt_tokens": len(PROMPT), "completion_tokens": 80, "total_tokens": 80 + len(PROMPT)}


def test_stop_cuts_the_text_and_echo_prepends_the_prompt(app, models):
    reply = post(app, "/v1/completions", {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 200, "seed": 1,
                                          "stop": ["\n"], "echo": True}).json()
    whole = models["shakespeare"].generate(PROMPT, length=200, seed=1)
    choice = reply["choices"][0]
    assert choice["text"] == PROMPT + whole[:whole.index("\n")]
    assert choice["finish_reason"] == "stop"


def test_logprobs_come_in_openais_legacy_shape(app):
    choice = post(app, "/v1/completions", {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 12, "seed": 2,
                                           "logprobs": 3}).json()["choices"][0]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert logprobs["text_offset"] == list(range(12))
    assert all(value <= 0 for value in logprobs["token_logprobs"])
    for token, value, top in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]):
        assert len(top) == 3 and max(top.values()) >= value - 1e-5


def test_echo_with_logprobs_scores_the_prompt_too_as_the_score_route_does(app):
    # how OpenAI-compatible scoring clients (lm-evaluation-harness and the like) ask for log-likelihoods
    prompt = "ROMEO: But soft"
    scored = post(app, "/v1/score", {"model": "shakespeare", "text": prompt}).json()
    for max_tokens in (0, 5):
        for stream in (False, True):
            body = {"model": "shakespeare", "prompt": prompt, "max_tokens": max_tokens, "echo": True, "logprobs": 2,
                    "seed": 3, "stream": stream}
            reply = post(app, "/v1/completions", body)
            assert reply.status_code == 200, reply.text
            if stream:
                chunks = [json.loads(line.removeprefix("data: ")) for line in reply.text.split("\n\n")
                          if line and line != "data: [DONE]"]
                choices = [c for chunk in chunks for c in chunk["choices"]]
                text = "".join(c["text"] for c in choices)
                tokens = [t for c in choices for t in c["logprobs"]["tokens"]]
                values = [v for c in choices for v in c["logprobs"]["token_logprobs"]]
                offsets = [o for c in choices for o in c["logprobs"]["text_offset"]]
                usage = chunks[-1]["usage"]
            else:
                choice = reply.json()["choices"][0]
                text, usage = choice["text"], reply.json()["usage"]
                tokens, values, offsets = (choice["logprobs"][key] for key in ("tokens", "token_logprobs", "text_offset"))
            assert text.startswith(prompt) and len(text) == len(prompt) + max_tokens
            assert "".join(tokens) == text and offsets == list(range(len(text)))
            assert sum(values[:len(prompt)]) == pytest.approx(scored["log_prob"], abs=1e-3)
            assert usage["prompt_tokens"] == len(prompt) and usage["completion_tokens"] == max_tokens
    # subwords: the pieces join to the prompt, spaces, accents and all
    prompt = "This movie was  great, café naïve 😀 fun."
    choice = post(app, "/v1/completions", {"model": "reviews-label", "prompt": prompt, "echo": True, "max_tokens": 0,
                                           "logprobs": 1}).json()["choices"][0]
    assert "".join(choice["logprobs"]["tokens"]) == prompt and len(choice["logprobs"]["tokens"]) < len(prompt)


def test_max_tokens_zero_is_for_echo_only(app):
    reply = post(app, "/v1/completions", {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 0})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "max_tokens"
    assert "echo" in reply.json()["error"]["message"]
    reply = post(app, "/v1/completions", {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 0, "echo": True})
    assert reply.json()["choices"][0]["text"] == PROMPT and reply.json()["choices"][0]["logprobs"] is None


def test_streamed_events_join_to_the_whole_completion_and_end_with_done(app):
    body = {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 30, "seed": 5}
    whole = post(app, "/v1/completions", body).json()["choices"][0]["text"]
    reply = post(app, "/v1/completions", {**body, "stream": True})
    assert reply.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in reply.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert "".join(c["text"] for chunk in chunks for c in chunk["choices"]) == whole
    assert chunks[-1]["usage"]["completion_tokens"] == 30


def test_many_streams_at_once_give_the_texts_of_one_at_a_time(app, models):
    settings = [{"seed": 11, "max_tokens": 25}, {"seed": 12, "max_tokens": 60, "temperature": 0.5},
                {"seed": 13, "max_tokens": 5, "top_p": 0.9}, {"seed": 14, "max_tokens": 40, "repetition_penalty": 1.3},
                {"seed": 15, "max_tokens": 33, "min_p": 0.05, "n": 3}, {"max_tokens": 20, "temperature": 0},
                {"seed": 16, "max_tokens": 50, "prompt": "KING HENRY:\nWhat " * 80},
                {"seed": 17, "max_tokens": 40, "repeat_guard": 0}, {"seed": 18, "max_tokens": 40, "repeat_guard": 0.5}]
    bodies = [{"model": "shakespeare", "prompt": PROMPT, **s} for s in settings]
    at_once = asyncio.run(post_all(app, [("/v1/completions", body) for body in bodies]))
    one_by_one = [post(app, "/v1/completions", body) for body in bodies]
    texts = lambda reply: [choice["text"] for choice in reply.json()["choices"]]
    assert [texts(r) for r in at_once] == [texts(r) for r in one_by_one]
    generator = models["shakespeare"]
    for body, reply in zip(bodies, at_once):
        settings = {"length": body["max_tokens"], **{k: body[k] for k in ("temperature", "top_p", "repetition_penalty",
                                                                         "min_p", "repeat_guard") if k in body}}
        for index, text in enumerate(texts(reply)):
            seed = body["seed"] + index if "seed" in body else None
            assert text == generator.generate(body["prompt"], seed=seed, **settings)


def test_a_label_steers_a_conditioned_model_as_the_python_api_does(app, models):
    body = {"model": "reviews-label", "prompt": "This film", "max_tokens": 30, "seed": 3, "label": "neg"}
    text = post(app, "/v1/completions", body).json()["choices"][0]["text"]
    assert text == models["reviews-label"].generate("This film", length=30, seed=3, label=("neg",))
    unknown = post(app, "/v1/completions", {**body, "label": "meh"})
    assert unknown.status_code == 400 and "meh" in unknown.json()["error"]["message"]


def test_models_health_and_the_playground_page(app):
    listed = post(app, "/v1/models", method="GET").json()
    assert [(m["id"], m["kind"]) for m in listed["data"]] == [("shakespeare", "language_model"),
                                                               ("sentiment", "classifier"),
                                                               ("reviews-label", "language_model")]
    assert post(app, "/health", method="GET").json()["status"] == "ok"
    page = post(app, "/", method="GET")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers


def test_classify_complete_score_and_inspect(app, models):
    labels = post(app, "/v1/classify", {"model": "sentiment", "texts": ["a gripping, beautiful film",
                                                                         "dull and far too long"]}).json()
    expected = models["sentiment"].classify(["a gripping, beautiful film", "dull and far too long"])
    assert [row["label"] for row in labels["data"]] == [p.label for p in expected]
    assert labels["data"][0]["probability"] == pytest.approx(expected[0].probability)
    completions = post(app, "/v1/complete", {"model": "shakespeare", "prefix": "My lo", "top": 3}).json()
    expected = models["shakespeare"].complete("My lo", top=3)
    assert [(c["text"], c["per_char"]) for c in completions["completions"]] == [(c.text, pytest.approx(c.per_char))
                                                                                for c in expected]
    scored = post(app, "/v1/score", {"model": "shakespeare", "text": "To be, or not to be"}).json()
    assert scored["bits_per_char"] == pytest.approx(models["shakespeare"].score("To be, or not to be")["bits_per_char"])
    trace = post(app, "/v1/inspect", {"model": "shakespeare", "text": "O Romeo", "layer": 0, "gate": "forget"}).json()
    assert trace["tokens"] == list("O Romeo") and trace["gate"] == "forget"
    assert len(trace["units"]) == models["shakespeare"].model.config.hidden_size
    assert len(trace["units"][0]["values"]) == len("O Romeo")


def test_metrics_count_requests_by_route_and_status_in_prometheus_format(app):
    post(app, "/v1/completions", {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 3})
    post(app, "/v1/completions", {"model": "nobody"})
    text = post(app, "/metrics", method="GET").text
    assert 'textgen_requests_total{route="/v1/completions",status="404"}' in text
    assert 'textgen_request_seconds_bucket{route="/v1/completions",le="+Inf"}' in text
    assert "# TYPE textgen_active_streams gauge" in text and 'textgen_characters_generated_total{model="shakespeare"}' in text


BAD_COMPLETIONS = [
    ({"model": "shakespeare", "prompt": PROMPT, "temperature": "hot"}, 400, "temperature"),
    ({"model": "shakespeare", "prompt": PROMPT, "max_tokens": 10**6}, 400, "max_tokens"),
    ({"model": "shakespeare", "prompt": PROMPT, "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "shakespeare", "prompt": PROMPT, "n": 1000}, 400, "n"),
    ({"model": "shakespeare", "prompt": PROMPT, "n": 2.5}, 400, "n"),
    ({"model": "shakespeare", "prompt": PROMPT, "top_p": 0}, 400, "top_p"),
    ({"model": "shakespeare", "prompt": PROMPT, "seed": -1}, 400, "seed"),
    ({"model": "shakespeare", "prompt": PROMPT, "stop": [""]}, 400, "stop"),
    ({"model": "shakespeare", "prompt": PROMPT, "stop": 3}, 400, "stop"),
    ({"model": "shakespeare", "prompt": PROMPT, "logprobs": 99}, 400, "logprobs"),
    ({"model": "shakespeare", "prompt": PROMPT, "stream": "yes"}, 400, "stream"),
    ({"model": "shakespeare", "prompt": PROMPT, "temperature": 0, "n": 2}, 400, "temperature"),
    ({"model": "shakespeare", "prompt": ""}, 400, "prompt"),
    ({"model": "shakespeare", "prompt": ["a", "b"]}, 400, "prompt"),
    ({"model": "shakespeare", "prompt": "x" * 100_001}, 400, "prompt"),
    ({"prompt": PROMPT}, 400, "model"),
    ({"model": "nobody", "prompt": PROMPT}, 404, "model"),
    ({"model": "/etc/passwd", "prompt": PROMPT}, 404, "model"),
    ({"model": "sentiment", "prompt": PROMPT}, 400, "model"),
]


@pytest.mark.parametrize("body, status, param", BAD_COMPLETIONS, ids=lambda v: json.dumps(v)[:40])
def test_a_bad_completion_request_is_a_4xx_naming_its_field(app, body, status, param):
    reply = post(app, "/v1/completions", body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert "--" not in error["message"]  # JSON fields, not command-line flags


@pytest.mark.parametrize("content", [b'{"model": "shakespeare", "prompt": "x", "temperature": NaN}',
                                     b'{"model": "shakespeare", "prompt": "x", "top_p": Infinity}',
                                     b'{"model": "shakespeare", "prompt": ', b"\xff\xfe{}", b"[1, 2]", b"",
                                     b"[" * 100_000])
def test_a_body_that_is_not_a_usable_json_object_is_a_400(app, content):
    reply = post(app, "/v1/completions", content=content, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_a_body_over_a_megabyte_is_a_413(app):
    reply = post(app, "/v1/completions", content=b'{"prompt": "' + b"x" * (1 << 20) + b'"}')
    assert reply.status_code == 413 and reply.json()["error"]["message"]


@pytest.mark.parametrize("path, body, param", [
    ("/v1/classify", {"model": "sentiment", "texts": []}, "texts"),
    ("/v1/classify", {"model": "sentiment", "texts": [""]}, "texts"),
    ("/v1/classify", {"model": "sentiment", "texts": [3]}, "texts"),
    ("/v1/classify", {"model": "shakespeare", "texts": ["x"]}, "model"),
    ("/v1/complete", {"model": "shakespeare", "prefix": "My", "top": 0}, "top"),
    ("/v1/complete", {"model": "shakespeare", "prefix": "My", "until": "page"}, "until"),
    ("/v1/complete", {"model": "shakespeare", "prefix": ""}, "prefix"),
    ("/v1/score", {"model": "shakespeare", "text": None}, "text"),
    ("/v1/inspect", {"model": "shakespeare", "text": "x", "layer": 9}, "layer"),
    ("/v1/inspect", {"model": "shakespeare", "text": "x", "gate": "reset"}, "gate"),
    ("/v1/inspect", {"model": "shakespeare", "text": "x" * 5000}, "text"),
])
def test_a_bad_request_to_textgens_own_routes_is_a_400(app, path, body, param):
    reply = post(app, path, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_an_unknown_route_or_method_answers_in_the_same_error_shape(app):
    assert post(app, "/v2/nothing", {}).json()["error"]["code"] == "not_found"
    assert post(app, "/v1/completions", method="GET").status_code == 405


def test_chat_completions_say_to_use_completions(app):
    # the openai client's most common call: the answer should say what textgen serves instead
    reply = post(app, "/v1/chat/completions", {"model": "shakespeare", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 404
    message = reply.json()["error"]["message"]
    assert "/v1/completions" in message and "chat" in message


def test_an_api_key_is_required_as_a_bearer_token(models):
    app = make_app(models, model=("shakespeare",), api_key="s3cret")
    assert post(app, "/v1/models", method="GET").status_code == 401
    assert post(app, "/v1/models", method="GET", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert post(app, "/v1/models", method="GET", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_cors_is_off_unless_origins_are_given(models):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = post(make_app(models, model=("shakespeare",)), "/v1/completions", method="OPTIONS", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    opened = post(make_app(models, model=("shakespeare",), cors=("https://app.example",)), "/v1/completions",
                  method="OPTIONS", headers=preflight)
    assert opened.headers["access-control-allow-origin"] == "https://app.example"


def test_listening_beyond_loopback_needs_an_api_key():
    with pytest.raises(ConfigError, match="--api-key"):
        check_host(ServeRequest(host="0.0.0.0"))
    check_host(ServeRequest(host="0.0.0.0", api_key="k"))
    check_host(ServeRequest(host="::1"))


def test_a_port_in_use_is_one_config_error():
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()



def test_ctrl_c_right_after_the_listening_line_stops_a_server_started_in_the_background():
    """A shell starts a background job (`textgen serve &`) with SIGINT ignored, and uvicorn handles it
    only once it runs: `kill -INT` just after the line that says where it listens was lost, and the
    server ran on (found by `tests/fuzz_long.py --seed 8`, itself run in the background)."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "textgen", "serve", "--model", "shakespeare", "--host",
                                "127.0.0.1", "--port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert process.stderr.readline().startswith("textgen serve: listening on http://127.0.0.1:")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 130
        assert process.stderr.read().strip().splitlines()[-1] == "textgen: interrupted"
    finally:
        process.kill()
        process.wait()

@pytest.fixture
def live(models):
    """A uvicorn server on a free loopback port in a thread: (base url, app); shut down after."""
    servers = []

    def start(**settings):
        app = make_app(models, model=("shakespeare",), **settings)
        sock = bind("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        servers.append((server, thread, sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}", app

    yield start
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_the_openai_client_works_unchanged_against_a_real_server(live, models):
    url, _ = live()
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["shakespeare"]
    generator = models["shakespeare"]
    reply = client.completions.create(model="shakespeare", prompt=PROMPT, max_tokens=30, seed=9, temperature=0.7)
    assert reply.choices[0].text == generator.generate(PROMPT, length=30, seed=9, temperature=0.7)
    assert reply.usage.completion_tokens == 30
    pieces = [chunk.choices[0].text for chunk in client.completions.create(
        model="shakespeare", prompt=PROMPT, max_tokens=30, seed=9, temperature=0.7, stream=True) if chunk.choices]
    assert "".join(pieces) == reply.choices[0].text and len(pieces) > 1
    stopped = client.completions.create(model="shakespeare", prompt=PROMPT, max_tokens=300, seed=9, stop=["\n"])
    whole = generator.generate(PROMPT, length=300, seed=9)
    assert stopped.choices[0].text == whole[:whole.index("\n")] and stopped.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError, match="top_p"):
        client.completions.create(model="shakespeare", prompt=PROMPT, top_p=2)
    scored = client.completions.create(model="shakespeare", prompt=PROMPT, max_tokens=0, echo=True, logprobs=0)
    assert scored.choices[0].text == PROMPT and len(scored.choices[0].logprobs.token_logprobs) == len(PROMPT)


def slots_in_use(url: str) -> float:
    metrics = httpx.get(url + "/metrics").text
    return float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("textgen_active_streams{")))


def test_a_client_that_disconnects_frees_its_slot_and_a_full_queue_answers_429(live):
    url, _ = live(max_streams=1, max_queue=0, max_tokens=1_000_000)
    body = {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 1_000_000, "stream": True}  # minutes of text
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=10) as reply:
        pieces = reply.iter_text()  # kept: a dropped iterator closes the connection
        next(pieces)  # generating now: the one slot is taken
        refused = httpx.post(url + "/v1/completions", json={**body, "stream": False}, timeout=10)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    deadline = time.monotonic() + 5
    while slots_in_use(url) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slots_in_use(url) == 0
    again = httpx.post(url + "/v1/completions", json={**body, "stream": False, "max_tokens": 5}, timeout=10)
    assert again.status_code == 200


def test_a_queued_request_waits_for_a_slot_then_runs(models):
    app = make_app(models, model=("shakespeare",), max_streams=1, max_queue=4)
    bodies = [{"model": "shakespeare", "prompt": PROMPT, "max_tokens": 20, "seed": seed} for seed in range(4)]
    replies = asyncio.run(post_all(app, [("/v1/completions", body) for body in bodies]))
    assert [r.status_code for r in replies] == [200] * 4
    assert [r.json()["choices"][0]["text"] for r in replies] == [
        models["shakespeare"].generate(PROMPT, length=20, seed=seed) for seed in range(4)]
    app.state.server.close()


def test_the_listening_socket_names_tcp_so_each_answer_leaves_without_waiting_for_an_ack():
    # asyncio sets TCP_NODELAY only on connections of an IPPROTO_TCP socket: with protocol 0, every
    # response's body waited for the client's delayed ACK of its headers (40 ms a request)
    import socket

    from textgen.serve import bind

    listener = bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
    finally:
        listener.close()


def stream_events(app, body: dict) -> list[dict]:
    reply = post(app, "/v1/completions", {**body, "stream": True})
    return [json.loads(line.removeprefix("data: ")) for line in reply.text.split("\n\n")
            if line.startswith("data: {")]


def test_a_stream_sends_its_text_at_most_every_stream_interval(models):
    body = {"model": "shakespeare", "prompt": PROMPT, "max_tokens": 200, "seed": 4}
    texts, seconds = {}, {}
    for interval in (0.0, 1.0):
        app = make_app(models, model=("shakespeare",), stream_interval=interval)
        started = time.perf_counter()
        events = stream_events(app, body)
        seconds[interval] = time.perf_counter() - started
        app.state.server.close()
        texts[interval] = [choice["text"] for event in events for choice in event["choices"] if choice["text"]]
    assert len(texts[0.0]) > 100  # a character a step, each sent at once (merged only where the reader lags)
    # the first at once, then one part a second at most, the last when the sample finishes: 2 parts
    # on an idle machine (a sample in well under a second), more only where the machine is slower
    assert 2 <= len(texts[1.0]) <= 2 + int(seconds[1.0])
    assert "".join(texts[0.0]) == "".join(texts[1.0]) == models["shakespeare"].generate(PROMPT, length=200, seed=4)


async def run_jobs(engine: Engine, jobs: list[Job]) -> list[str]:
    """Submit `jobs` at once; each one's first sample's text once every sample has finished."""
    for job in jobs:
        engine.submit(job)

    async def text(job: Job) -> str:
        parts, unfinished = [], job.config.num_samples
        while unfinished:
            for event in await job.next_events():
                parts += [event.text] if event.index == 0 else []
                unfinished -= event.finish_reason is not None
        return "".join(parts)
    return await asyncio.gather(*(text(job) for job in jobs))


def test_a_prompt_read_lately_or_twice_at_once_is_read_once(models):
    generator = models["shakespeare"]
    engine = Engine(generator.model, generator.tokenizer, generator.device, 8, 8)
    reads, read = [], engine._read
    engine._read = lambda ids, state, labels: reads.append(tuple(ids.shape)) or read(ids, state, labels)

    async def round_of(prompts: list[str]) -> list[str]:
        loop = asyncio.get_running_loop()
        return await run_jobs(engine, [Job(prompt, SampleConfig(length=20, seed=seed), 0, loop)
                                       for seed, prompt in enumerate(prompts)])
    expected = [generator.generate(PROMPT, length=20, seed=seed) for seed in range(3)]
    assert asyncio.run(round_of([PROMPT] * 3)) == expected
    assert reads == [(1, len(PROMPT) + 1)]  # one row for three streams (the prompt and its start token)
    assert asyncio.run(round_of([PROMPT] * 3)) == expected
    assert asyncio.run(round_of(["To be"])) == [generator.generate("To be", length=20, seed=0)]
    assert reads == [(1, len(PROMPT) + 1), (1, len("To be") + 1)]  # the first prompt was not read again
    engine.close()


def test_a_prompt_is_read_in_power_of_two_pieces_to_the_model_own_result(models):
    # oneDNN keeps a kernel per input shape: a server reading every length and batch would keep growing
    generator = models["shakespeare"]
    engine = Engine(generator.model, generator.tokenizer, generator.device, 8, 8)
    shapes, model = [], engine.model
    engine.model = lambda ids, state, labels: shapes.append(tuple(ids.shape)) or model(ids, state, labels)
    ids = torch.randint(1, generator.tokenizer.vocab_size, (3, 7))
    with torch.inference_mode():
        logits, (hidden, cell) = engine._read(ids, None, None)
        expected, (expected_hidden, expected_cell) = model(ids, None, None)
    assert shapes == [(4, 4), (4, 2), (4, 1)]
    assert torch.allclose(logits[:, -1], expected[:, -1], atol=1e-4)
    assert torch.allclose(hidden, expected_hidden, atol=1e-5) and torch.allclose(cell, expected_cell, atol=1e-5)
    engine.close()


# a prompt that repeats a speech and begins it again: its likeliest continuation extends a long repeat
LOOP = "ROMEO:\nI will not go, my lord, I will not go.\n\n" * 3 + "ROMEO:\nI will not go, my lo"


def test_streams_under_the_repeat_guard_sample_as_one_generation_does(models):
    # the guard reads the streams' recent tokens side by side in one call
    generator = models["shakespeare"]
    engine = Engine(generator.model, generator.tokenizer, generator.device, 8, 8)

    async def together(guard: float) -> list[str]:
        loop = asyncio.get_running_loop()
        configs = [SampleConfig(length=200, temperature=0.3, seed=seed, repeat_guard=guard) for seed in range(3)]
        return await run_jobs(engine, [Job(LOOP, config, 0, loop) for config in configs])
    guarded = asyncio.run(together(0.2))
    assert guarded == [generator.generate(LOOP, length=200, temperature=0.3, seed=seed)
                       for seed in range(3)]
    assert guarded != asyncio.run(together(0.0))
    engine.close()
