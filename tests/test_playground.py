"""The playground page at `/` of the real server, driven in headless Chromium: write (streamed),
autocomplete with the keyboard, classify, look inside, and markup in the text shown as text."""

from __future__ import annotations

import re
import shutil
import threading
import urllib.request

import pytest

from textgen.requests import ServeRequest
from textgen.serve import bind, create_app
from textgen.serve.playground import PLAYGROUND_CSP

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
INSTALL = ("install them as .ci/run does: apt-get install chromium; pip install playwright "
           "(the Debian browser is used, so no `playwright install`)")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    sync_playwright = None


@pytest.fixture(scope="module")
def server_url():
    """The server with a language model and a classifier, on a free loopback port, for this module's tests."""
    import uvicorn

    sock = bind("127.0.0.1", 0)
    app = create_app(ServeRequest(model=("shakespeare", "sentiment"), port=0, device="cpu"))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.05)
        assert server.started, "the server did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or sync_playwright is None:
        pytest.skip(f"needs Chromium{' (not on PATH)' if CHROMIUM is None else ''} and playwright"
                    f"{' (not installed)' if sync_playwright is None else ''}; {INSTALL}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server_url):
    """The playground, open; the test fails on any script error or refused resource."""
    opened = browser.new_page(viewport={"width": 1100, "height": 1200})
    problems = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    # a 4xx the page shows as a message is expected; any other console error (a CSP refusal) is not
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error"
              and not re.match(r"Failed to load resource: the server responded with a status of 4", message.text)
              else None)
    opened.on("dialog", lambda dialog: problems.append(f"a dialog opened: {dialog.message}"))
    opened.goto(server_url + "/")
    yield opened
    opened.close()
    assert not problems


def slow_network(page) -> None:
    """Deliver responses at 20 kB/s, so that a stream takes seconds however fast the server writes it."""
    page.context.new_cdp_session(page).send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": 20_000, "uploadThroughput": -1})


def type_into_text(page, text: str) -> None:
    prompt = page.locator("#prompt")
    prompt.click()
    prompt.press_sequentially(text, delay=20)


def test_page_comes_with_a_content_security_policy_and_needs_nothing_from_outside(server_url):
    with urllib.request.urlopen(server_url + "/") as response:
        policy = response.headers["Content-Security-Policy"]
        body = response.read().decode("utf-8")
    assert policy == PLAYGROUND_CSP
    assert "'unsafe-inline'" not in policy and "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/]+=*'", policy)
    assert not re.search(r"(src|href)=\"(https?:)?//", body), "the page loads something from outside"
    assert '"name": "shakespeare", "kind": "language_model"' in body


def test_write_streams_a_continuation_into_the_text(page):
    type_into_text(page, "ROMEO:")
    page.fill("#max-tokens", "2000")  # long enough to span many of the 20 ms sends
    slow_network(page)
    # the text's length, read by the page itself every 2 ms while the stream runs: the server sends a
    # stream's text every 20 ms, faster than a round trip from the test could see each piece
    page.evaluate("""() => { const text = document.querySelector('#prompt'); window.lengths = [];
                             window.watch = setInterval(() => window.lengths.push(text.value.length), 2); }""")
    page.click("#write")
    expect(page.locator("#write-status")).to_have_text("wrote 2000 characters")
    lengths = page.evaluate("() => { clearInterval(window.watch); return window.lengths; }")
    grown = sorted(set(lengths) - {len("ROMEO:"), len("ROMEO:") + 2000})
    assert len(grown) >= 3, f"the text did not grow piece by piece: {lengths}"
    text = page.input_value("#prompt")
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 2000
    page.screenshot(path="/tmp/playground-write.png", full_page=True)


def test_stop_ends_the_stream_early(page):
    type_into_text(page, "KING:")
    page.fill("#max-tokens", "4000")
    slow_network(page)
    page.click("#write")
    expect(page.locator("#write-status")).to_contain_text("writing… ", timeout=30_000)
    page.click("#stop")
    expect(page.locator("#write-status")).to_contain_text("stopped after", timeout=10_000)
    assert len(page.input_value("#prompt")) < len("KING:") + 4000
    expect(page.locator("#prompt")).to_be_editable()


def test_autocomplete_offers_choices_picked_with_the_keyboard(page):
    type_into_text(page, "ROMEO: I lov")
    choices = page.locator("#choices li")
    expect(choices.first).to_be_visible(timeout=30_000)
    texts = [choices.nth(i).get_attribute("data-text") for i in range(choices.count())]
    assert len(texts) >= 2 and all(texts)
    page.screenshot(path="/tmp/playground-choices.png")
    page.keyboard.press("ArrowDown")
    expect(choices.nth(1)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")
    expect(page.locator("#prompt")).to_have_value("ROMEO: I lov" + texts[1])
    expect(page.locator("#choices")).to_be_hidden()
    page.keyboard.type(" a")
    expect(choices.first).to_be_visible(timeout=30_000)
    page.keyboard.press("Escape")
    expect(page.locator("#choices")).to_be_hidden()
    page.keyboard.press("Enter")  # with no choices shown, Enter is a line break again
    expect(page.locator("#prompt")).to_have_value("ROMEO: I lov" + texts[1] + " a\n")


def test_classify_shows_the_label_and_its_probability(page):
    type_into_text(page, "A wonderful, moving film; I loved every minute.")
    page.click("#classify")
    expect(page.locator("#label")).to_have_text(re.compile(r"^(pos|neg)$"), timeout=30_000)
    expect(page.locator("#label-probability")).to_have_text(re.compile(r"^\(\d+\.\d%\)$"))
    expect(page.locator("#probabilities .bar")).to_have_count(2)


def test_look_inside_colours_each_character_by_a_unit_and_follows_the_pickers(page):
    text = "To be, or not to be"
    type_into_text(page, text)
    spans = page.locator("#inside-text span")
    expect(spans).to_have_count(len(text), timeout=30_000)
    expect(page.locator("#about")).to_contain_text("layer 1 cell unit")
    titles = [spans.nth(i).get_attribute("title") for i in range(len(text))]
    assert all(re.fullmatch(r"-?\d+\.\d{4}", title) for title in titles)
    colours = spans.evaluate_all("spans => spans.map(s => s.style.backgroundColor)")
    assert all(c.startswith("rgb(") for c in colours) and len(set(colours)) > 1
    spans.nth(3).hover()
    expect(page.locator("#readout")).to_have_text(re.compile(r'^token 3 "b": -?\d+\.\d{4}$'))
    page.select_option("#gate", "forget")
    expect(page.locator("#about")).to_contain_text("layer 1 forget unit", timeout=30_000)
    expect(page.locator("#legend span")).to_have_text(["0", "0.25", "0.5", "0.75", "1"])
    page.fill("#layer", "0")
    page.dispatch_event("#layer", "change")
    expect(page.locator("#about")).to_contain_text("layer 0 forget unit", timeout=30_000)
    page.select_option("#gate", "update")  # an LSTM has none: the server's message is shown
    expect(page.locator("#inside-error")).to_contain_text("not a gate of", timeout=30_000)
    expect(page.locator("#gate")).to_have_value("forget")  # the picker goes back to what is shown
    page.screenshot(path="/tmp/playground-inside.png", full_page=True)


def test_markup_in_the_text_is_shown_as_text(page):
    markup = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    page.fill("#prompt", markup)
    page.dispatch_event("#prompt", "input")
    expect(page.locator("#inside-text")).to_have_text(markup, timeout=30_000)
    page.click("#classify")
    expect(page.locator("#label")).to_have_text(re.compile(r"^(pos|neg)$"), timeout=30_000)
    assert page.locator("#inside-text script, #inside-text img").count() == 0
    page.screenshot(path="/tmp/playground-markup.png", full_page=True)
