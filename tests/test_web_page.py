"""The chat page at / in a real browser: Debian's chromium, headless, driven by selenium
through chromedriver. The browser may reach only 127.0.0.1, so a page that loaded
anything from the network would break here.

Most tests run on a tiny random model (quick; its answers are random bytes). Stored
conversations are written into the page's localStorage (its own format, store.js) where a
test needs known model output: HTML in an answer, Markdown, edit and regenerate. The
long-document test runs on the default model with a 10k-token document, beyond its
trained window of 8192. The browser tests skip, with the reason, where chromium,
chromedriver or selenium is missing (scripts/setup_browser.sh installs them);
SELFEXTEND_GGUF_SCREENSHOTS=DIR saves the long-document test's screenshots there."""

import os
import random
import re
import shutil
import time

import httpx
import pytest

from selfextend_gguf.server.routes.web import WEB_DIR
from server_process import ServerProcess

WAIT_S = 600          # the page's own state decides; this only stops a hung run
LONG_WAIT_S = 3600    # reading 10k tokens on a busy 2-core machine
API_KEY = "page-test-key"


# ------------------------------------------------------------------------------ browser

def _chromium():
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)


def _start_browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium; it is in the 'test' extra)")
    binary, driver = _chromium(), shutil.which("chromedriver")
    if binary is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", binary), ("chromedriver", driver)) if p is None)
        pytest.skip(f"no {missing} here: bash scripts/setup_browser.sh installs Debian's chromium and "
                    f"chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                # offline: no name resolves but the loopback address the servers listen on
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


@pytest.fixture
def browser():
    driver = _start_browser()
    yield driver
    driver.quit()


def _by(css):
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def find(driver, css):
    return driver.find_element(*_by(css))


def find_all(driver, css):
    return driver.find_elements(*_by(css))


def wait_for(driver, predicate, what, timeout=WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    # long waits look less often: the model shares the machine's cores with the browser
    poll = 0.2 if timeout <= WAIT_S else 1.0
    return WebDriverWait(driver, timeout, poll_frequency=poll).until(lambda d: predicate(d), message=what)


def page_state(driver):
    return driver.execute_script("return [document.body.dataset.state, document.body.dataset.phase || '']")


def wait_state(driver, state, timeout=WAIT_S):
    wait_for(driver, lambda d: page_state(d)[0] == state, f"the page to be {state}", timeout)


def open_page(driver, server):
    driver.get(server.url + "/")
    wait_state(driver, "idle")


def answers(driver):
    return find_all(driver, ".message.assistant:not(.pending)")


def ask(driver, question, timeout=WAIT_S):
    """Type a question, send it, wait for the answer; the new answer's element."""
    before = len(answers(driver))
    find(driver, "#prompt").send_keys(question)
    find(driver, "#send").click()
    wait_state(driver, "idle", timeout)
    assert len(answers(driver)) == before + 1, find(driver, "#notice").text
    return answers(driver)[-1]


def stats_of(answer):
    node = answer.find_element(*_by(".stats"))
    return {k: int(node.get_attribute("data-" + k)) for k in
            ("prompt-tokens", "evaluated", "reused", "first-token-ms", "total-ms")} | {"text": node.text}


def set_field(driver, css, value):
    """A setting typed in, as a user does (the settings panel opened first)."""
    if not find(driver, "#settings").get_attribute("open"):
        find(driver, "#settings summary").click()
    from selenium.webdriver.common.keys import Keys

    field = find(driver, css)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.TAB)   # leaving the field commits it (its change event)
    assert field.get_attribute("value") == str(value)


def store_conversation(driver, server, conv):
    """Write a conversation in the page's storage format (store.js) and show it."""
    open_page(driver, server)
    driver.execute_script("localStorage.setItem('selfextend-gguf:conversation:' + arguments[0].id, "
                          "JSON.stringify(arguments[0]));"
                          "localStorage.setItem('selfextend-gguf:current', arguments[0].id);", conv)
    driver.refresh()
    wait_state(driver, "idle")


def conversation(messages, conv_id="stored", **fields):
    return {"id": conv_id, "title": fields.pop("title", "stored"), "created": 1, "updated": 1, "system": "",
            "document": None, "messages": messages, **fields}


def severe_console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def health(server):
    return httpx.get(server.url + "/health", timeout=30).json()


# ------------------------------------------------------------------------------ servers

@pytest.fixture(scope="module")
def server(tiny_llama_512):
    # n_ctx 2048 on a model trained on 512: Self-Extend on (eq. 5)
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", "2048", "--threads", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def key_server(tiny_llama_512):
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", "1024", "--threads", "1",
                        "--api-key", API_KEY)
    yield srv
    srv.stop()


# ------------------------------------------------------------------------------ without a browser

def test_page_and_its_files_are_open_without_the_key_and_the_api_is_not(key_server):
    page = httpx.get(key_server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(key_server.url + "/web/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(key_server.url + "/props").status_code == 401
    for missing in ("/web/nothing.js", "/web/.hidden", "/web/"):
        assert httpx.get(key_server.url + missing).status_code in (401, 404), missing
    assert httpx.get(key_server.url + "/web/nothing.js").json()["error"]["message"]


def test_page_files_are_the_package_own_and_load_nothing_from_the_network():
    names = sorted(p.name for p in WEB_DIR.iterdir())
    assert "index.html" in names and "app.js" in names
    referenced = set()
    for name in names:
        text = (WEB_DIR / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
        referenced |= set(re.findall(r'(?:src|href)="web/([\w.-]+)"', text))
        referenced |= set(re.findall(r'from "\./([\w.-]+)"', text))
    assert referenced and referenced <= set(names), referenced - set(names)


# ------------------------------------------------------------------------------ in the browser

def test_page_loads_offline_and_shows_the_server(browser, server):
    open_page(browser, server)
    props = httpx.get(server.url + "/props").json()
    se = props["self_extend"]
    assert find(browser, "#status-model").text == props["model_alias"]
    assert "n_ctx 2,048 (trained 512)" in find(browser, "#status-ctx").text
    assert find(browser, "#status-se").text == \
        f"Self-Extend G={se['group_size']} W={se['neighbor_window']} ({props['self_extend_origin']})"
    assert props["self_extend_origin"] == "eq. 5"
    # everything the page loaded came from this server
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server.url + "/") for u in urls), urls
    assert not severe_console_errors(browser)


def test_a_question_streams_an_answer_and_the_next_reuses_the_prompt(browser, server):
    open_page(browser, server)
    set_field(browser, "#max-tokens", 24)
    first = ask(browser, "What does the document say?")
    s1 = stats_of(first)
    n_tokens = int(re.search(r"answer (\d+) tokens", s1["text"])[1])
    stored = browser.execute_script("return JSON.parse(localStorage.getItem('selfextend-gguf:conversation:' + "
                                    "localStorage.getItem('selfextend-gguf:current')))")
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert n_tokens == 0 or stored["messages"][1]["content"], stored   # the streamed text was kept
    assert s1["evaluated"] + s1["reused"] == s1["prompt-tokens"] > 0
    assert "answer" in s1["text"] and "reused from the cache" in s1["text"]
    second = ask(browser, "And then?")
    s2 = stats_of(second)
    # the first question's whole prompt was already in the slot
    assert s2["reused"] >= s1["prompt-tokens"] - 1 and s2["evaluated"] < s2["prompt-tokens"], (s1, s2)
    used = re.search(r"context: ([\d,]+) used · ([\d,]+) left", find(browser, "#status-used").text)
    assert used and int(used[1].replace(",", "")) + int(used[2].replace(",", "")) == 2048
    assert not severe_console_errors(browser)


def test_max_tokens_and_the_system_prompt_reach_the_server(browser, server):
    open_page(browser, server)
    set_field(browser, "#max-tokens", 3)
    set_field(browser, "#temperature", 0)
    answer = ask(browser, "Hi")
    assert stats_of(answer)["text"].count("answer ") == 1
    assert re.search(r"answer [0-3] tokens", stats_of(answer)["text"])
    without = stats_of(answer)["prompt-tokens"]
    find(browser, "#new-chat").click()
    find(browser, "#system").send_keys("You answer in French.")
    answer = ask(browser, "Hi")
    # the byte tokenizer: one token per character of the system prompt, and its turn's tokens
    assert stats_of(answer)["prompt-tokens"] > without + len("You answer in French.")
    browser.refresh()
    wait_state(browser, "idle")
    assert find(browser, "#system").get_attribute("value") == "You answer in French."
    assert find(browser, "#max-tokens").get_attribute("value") == "3"


def test_a_document_shows_its_tokens_and_a_too_long_one_says_which_n_ctx_fits(browser, server, tmp_path):
    open_page(browser, server)
    long_doc = tmp_path / "long.txt"
    long_doc.write_text("The quick brown fox jumps over the lazy dog. " * 80)   # 3600 characters
    n_tokens = len(httpx.post(server.url + "/tokenize", json={"content": long_doc.read_text()}).json()["tokens"])
    find(browser, "#file-input").send_keys(str(long_doc))
    wait_for(browser, lambda d: "tokens" in find(d, "#doc-info").text and "counting" not in find(d, "#doc-info").text,
             "the document's token count")
    assert find(browser, "#doc-info").text == f"long.txt: 3,600 characters, {n_tokens:,} tokens"
    wait_for(browser, lambda d: find(d, "#fit").is_displayed(), "the too-long message")
    fit = find(browser, "#fit").text
    needed = int(re.search(r"--n-ctx (\d+)", fit)[1])
    assert fit.startswith("Too long for this server") and "its n_ctx is 2,048" in fit, fit
    assert needed > n_tokens and needed % 1024 == 0 and "fits a document of at most" in fit, fit
    # not sent: the question stays in the box
    find(browser, "#prompt").send_keys("Summarize it")
    find(browser, "#send").click()
    wait_state(browser, "idle")
    assert not answers(browser) and not find_all(browser, ".message.user")
    assert find(browser, "#prompt").get_attribute("value") == "Summarize it"
    assert "Not sent" in find(browser, "#notice").text
    # a pasted short document replaces it and fits
    find(browser, "#paste-open").click()
    find(browser, "#paste-name").clear()
    find(browser, "#paste-name").send_keys("note")
    find(browser, "#paste-text").send_keys("A short note about <b>foxes</b>.")
    find(browser, "#paste-ok").click()
    wait_for(browser, lambda d: not find(d, "#fit").is_displayed(), "the document to fit")
    assert re.fullmatch(r"note: 32 characters, \d+ tokens", find(browser, "#doc-info").text)
    find(browser, "#doc-preview summary").click()
    assert find(browser, "#doc-text").text == "A short note about <b>foxes</b>."
    # the question still in the box goes with it now
    find(browser, "#send").click()
    wait_state(browser, "idle")
    assert len(answers(browser)) == 1 and find(browser, ".message.user .content").text == "Summarize it"


def test_stop_ends_a_long_prompt_and_frees_the_server(browser, tiny_llama_512, tmp_path):
    # about 27k tokens (its tokenizer writes a space as 3 byte tokens) take the tiny model
    # many seconds to read: stop arrives while it reads
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", "32768", "--threads", "1")
    try:
        open_page(browser, srv)
        rng = random.Random(0)
        doc = tmp_path / "big.txt"
        doc.write_text(" ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(3500)))
        find(browser, "#file-input").send_keys(str(doc))
        wait_for(browser, lambda d: re.search(r"[\d,]+ tokens", find(d, "#doc-info").text), "the token count")
        find(browser, "#prompt").send_keys("Which word comes first?")
        find(browser, "#send").click()
        wait_for(browser, lambda d: page_state(d) in (["busy", "reading"], ["idle", ""]), "the prompt to be sent")
        assert page_state(browser) == ["busy", "reading"], find(browser, "#notice").text
        assert find(browser, "#stop").is_displayed() and not find(browser, "#send").is_displayed()
        find(browser, "#stop").click()
        wait_state(browser, "idle")
        assert find(browser, "#send").is_displayed() and not find(browser, "#stop").is_displayed()
        assert not answers(browser)
        assert find(browser, "#prompt").get_attribute("value") == "Which word comes first?"
        assert "Stopped" in find(browser, "#notice").text
        # the server dropped the request: its slot is free again
        wait_for(browser, lambda d: health(srv)["slots_idle"] == health(srv)["slots_total"], "an idle slot")
    finally:
        srv.stop()


def test_the_page_asks_for_the_api_key_and_sends_it(browser, key_server):
    browser.get(key_server.url + "/")
    wait_state(browser, "key")
    assert find(browser, "#key-dialog").is_displayed()
    find(browser, "#key-input").send_keys("wrong")
    find(browser, "#key-ok").click()
    wait_for(browser, lambda d: page_state(d)[0] == "key" and find(d, "#key-error").is_displayed(),
             "the refusal")
    assert "refused" in find(browser, "#key-error").text
    find(browser, "#key-input").send_keys(API_KEY)
    find(browser, "#key-ok").click()
    wait_state(browser, "idle")
    assert not find(browser, "#key-dialog").is_displayed()
    assert find(browser, "#status-model").text.endswith(".gguf")
    set_field(browser, "#max-tokens", 8)
    assert stats_of(ask(browser, "Hello"))["prompt-tokens"] > 0
    # kept for this tab only (unless remembered): a reload does not ask again
    browser.refresh()
    wait_state(browser, "idle")
    find(browser, "#forget-key").click()
    wait_state(browser, "key")


def test_html_in_answers_user_text_and_documents_is_shown_as_text(browser, server):
    """Model output cannot inject HTML: an answer is stored with a script, an image with
    onerror and a javascript: link (as a model could write them) and the page shows it.
    Stored and streamed answers go through the same renderer (markdown.js)."""
    evil = ('<script>window.__injected = 1</script> <img src=x onerror="window.__injected = 2"> '
            '[click](javascript:window.__injected=3) <b>bold?</b>')
    conv = conversation([{"role": "user", "content": "<i>question</i> <script>window.__injected = 4</script>"},
                         {"role": "assistant", "content": evil}],
                        title="<img src=x onerror=\"window.__injected = 5\">",
                        document={"name": "<b>doc</b>.txt", "text": "<script>window.__injected = 6</script>",
                                  "tokens": 12})
    store_conversation(browser, server, conv)
    shown = find(browser, ".message.assistant .content").text
    assert "<script>window.__injected = 1</script>" in shown and '<img src=x onerror="window.__injected = 2">' in shown
    assert "[click](javascript:window.__injected=3)" in shown and "<b>bold?</b>" in shown
    assert find(browser, ".message.user .content").text.startswith("<i>question</i> <script>")
    assert find(browser, "#doc-info").text.startswith("<b>doc</b>.txt")
    assert find(browser, ".conversation .open").text.startswith("<img")
    inside = "#messages script, #messages img, #messages a, #messages b, #messages i, #sidebar img, #doc-info b"
    assert not find_all(browser, inside)
    assert browser.execute_script("return window.__injected") is None
    # the renderer itself, as the page calls it on every streamed piece of an answer
    rendered = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('./web/markdown.js').then(m => { const box = document.createElement('div');"
        "m.renderMarkdown(box, arguments[0]); done([box.querySelectorAll('script, img, a').length, box.textContent]); });",
        evil)
    assert rendered[0] == 0 and "<script>" in rendered[1]
    assert not severe_console_errors(browser)


def test_markdown_is_rendered(browser, server):
    text = ("# Title\n\nSome **bold**, *italic*, `code <b>` and ~~gone~~ text with a "
            "[link](https://example.org/a) and https://example.org/b.\n\n"
            "- one\n- two\n  - nested\n\n1. first\n2. second\n\n> quoted\n\n"
            "```python\nprint('<b>hi</b>')\n```\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\n---\nend")
    store_conversation(browser, server, conversation([{"role": "user", "content": "Show me"},
                                                      {"role": "assistant", "content": text}]))
    box = ".message.assistant .content "
    assert find(browser, box + "h1").text == "Title"
    assert find(browser, box + "strong").text == "bold" and find(browser, box + "em").text == "italic"
    assert find(browser, box + "p code").text == "code <b>" and find(browser, box + "del").text == "gone"
    links = find_all(browser, box + "a")
    assert [a.get_attribute("href") for a in links] == ["https://example.org/a", "https://example.org/b"]
    assert all(a.get_attribute("rel") == "noopener noreferrer nofollow" for a in links)
    assert [li.text for li in find_all(browser, box + "ul > li")][0] == "one"
    assert find(browser, box + "ul ul li").text == "nested"
    assert [li.text for li in find_all(browser, box + "ol > li")] == ["first", "second"]
    assert find(browser, box + "blockquote").text == "quoted"
    code = find(browser, box + "pre code")
    assert code.text == "print('<b>hi</b>')" and code.get_attribute("data-lang") == "python"
    assert [c.text for c in find_all(browser, box + "td")] == ["1", "2"]
    assert "align-right" in find_all(browser, box + "td")[1].get_attribute("class")
    assert find_all(browser, box + "hr")


def test_conversations_are_kept_in_the_browser(browser, server):
    open_page(browser, server)
    set_field(browser, "#max-tokens", 8)
    ask(browser, "First conversation")
    find(browser, "#new-chat").click()
    ask(browser, "Second conversation")
    browser.refresh()
    wait_state(browser, "idle")
    titles = [e.text for e in find_all(browser, ".conversation .open")]
    assert titles == ["Second conversation", "First conversation"]
    assert find(browser, ".message.user .content").text == "Second conversation"
    find_all(browser, ".conversation .open")[1].click()
    wait_for(browser, lambda d: find(d, ".message.user .content").text == "First conversation", "the first one")
    assert len(answers(browser)) == 1 and stats_of(answers(browser)[0])["prompt-tokens"] > 0
    # deleting the open one leaves an empty new conversation on screen
    find_all(browser, ".conversation .delete")[1].click()
    browser.switch_to.alert.accept()
    wait_for(browser, lambda d: [e.text for e in find_all(d, ".conversation .open")] == ["Second conversation"],
             "one conversation left")
    assert not find_all(browser, ".message")


def test_copy_edit_and_regenerate(browser, server):
    stats = {"prompt_tokens": 10, "evaluated": 10, "reused": 0, "prompt_ms": 1, "prompt_per_second": 1,
             "predicted_n": 2, "predicted_ms": 1, "predicted_per_second": 1, "first_token_ms": 1, "total_ms": 2}
    store_conversation(browser, server, conversation([
        {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1", "stats": stats},
        {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2", "stats": stats}]))
    set_field(browser, "#max-tokens", 8)
    copy = find_all(browser, ".message.assistant .copy")[0]
    copy.click()
    wait_for(browser, lambda d: copy.text == "Copied", "the copy feedback")
    # regenerate the last answer: the same prompt, read from the cache but its last token
    find_all(browser, ".message.assistant .regenerate")[1].click()
    wait_state(browser, "idle")
    assert [e.text for e in find_all(browser, ".message.user .content")] == ["Q1", "Q2"]
    regenerated = stats_of(answers(browser)[1])
    assert regenerated["prompt-tokens"] > 10 and len(answers(browser)) == 2
    # edit the first question: what came after it is dropped and answered again
    find_all(browser, ".message.user .edit")[0].click()
    box = find(browser, ".message.editing textarea")
    box.clear()
    box.send_keys("Q1, edited")
    find(browser, ".message.editing .resend").click()
    wait_state(browser, "idle")
    assert [e.text for e in find_all(browser, ".message.user .content")] == ["Q1, edited"]
    assert len(answers(browser)) == 1 and stats_of(answers(browser)[0])["prompt-tokens"] > 0
    stored = browser.execute_script("return JSON.parse(localStorage.getItem('selfextend-gguf:conversation:stored'))")
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][0]["content"] == "Q1, edited" and stored["messages"][1]["stats"]["predicted_n"] >= 0


# ------------------------------------------------------------------------------ the default model

WINDS = ["north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west"]
WEATHER = ["a clear sky", "low grey clouds", "rain squalls", "a thick fog", "a bright sun", "light drizzle",
           "scattered clouds", "a heavy swell from the west"]
WORK = ["mended the mainsail", "scrubbed the deck", "checked the water casks", "tarred the rigging",
        "repaired the jolly boat", "counted the stores", "pumped the bilge", "painted the rail",
        "spliced a new halyard", "cleaned the galley"]
SIGHTS = ["a pod of dolphins", "a merchant brig bound for Lisbon", "an albatross", "floating kelp",
          "a distant whaler", "flying fish", "a waterspout far to leeward", "no other ship"]
FACT = ("On this day Captain Ellery hid the spare key to the chart room inside the ship's bell, and told only "
        "the first mate.")


def logbook(n_days: int, fact_day: int) -> str:
    """A ship's logbook, about 72 tokens a day, with one fact on one day."""
    rng = random.Random(7)
    days = []
    for day in range(1, n_days + 1):
        text = (f"Day {day}. Wind from the {rng.choice(WINDS)} at {rng.randint(3, 30)} knots, with "
                f"{rng.choice(WEATHER)}. We made {rng.randint(40, 180)} nautical miles. The crew "
                f"{rng.choice(WORK)} and {rng.choice(WORK)}. The lookout reported {rng.choice(SIGHTS)}. "
                f"Stores: {rng.randint(5, 60)} barrels of flour and {rng.randint(10, 90)} casks of water remain.")
        days.append(text + (" " + FACT if day == fact_day else ""))
    return "The logbook of the schooner Meridian\n\n" + "\n\n".join(days) + "\n"


def _read_for(driver, seconds):
    """The page has been reading the prompt for this long (by its own clock)."""
    if page_state(driver) != ["busy", "reading"]:
        return False
    clock = re.search(r"([\d.]+) s$", find(driver, ".pending .phase").text)
    return clock is not None and float(clock[1]) >= seconds


def _screenshot(driver, name):
    folder = os.environ.get("SELFEXTEND_GGUF_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        driver.save_screenshot(os.path.join(folder, name))


@pytest.mark.real_model
def test_a_10k_token_document_on_the_default_model(browser, tmp_path):
    """A document longer than the model's trained window (8192), two questions: the
    first reads it (Self-Extend), the second reuses it from the slot."""
    srv = ServerProcess("--n-ctx", "12288")
    try:
        browser.set_window_size(1280, 1000)
        open_page(browser, srv)
        assert find(browser, "#status-se").text.startswith("Self-Extend G=")
        doc = tmp_path / "logbook.txt"
        doc.write_text(logbook(140, 75))
        find(browser, "#file-input").send_keys(str(doc))
        wait_for(browser, lambda d: re.search(r"[\d,]+ tokens$", find(d, "#doc-info").text), "the token count")
        n_doc = int(re.search(r"([\d,]+) tokens$", find(browser, "#doc-info").text)[1].replace(",", ""))
        assert 9000 < n_doc < 11000, n_doc
        assert not find(browser, "#fit").is_displayed()
        set_field(browser, "#temperature", 0)
        set_field(browser, "#max-tokens", 48)
        find(browser, "#settings summary").click()   # closed again, for the screenshots

        started = time.monotonic()
        find(browser, "#prompt").send_keys("What is this document about? Answer in one sentence.")
        find(browser, "#send").click()
        # a screenshot once the page's clock shows a few seconds of reading
        wait_for(browser, lambda d: _read_for(d, 3) or page_state(d) in (["idle", ""], ["busy", "writing"]),
                 "the clock")
        if page_state(browser)[1] == "reading":
            _screenshot(browser, "web-page-reading.png")
        wait_state(browser, "idle", LONG_WAIT_S)
        first_s = time.monotonic() - started
        first = answers(browser)[-1]
        assert first.find_element(*_by(".content")).text.strip(), find(browser, "#notice").text
        s1 = stats_of(first)
        assert s1["prompt-tokens"] > max(n_doc, 8192) and s1["reused"] < 64, s1

        started = time.monotonic()
        second = ask(browser, "Where did Captain Ellery hide the spare key to the chart room?", LONG_WAIT_S)
        second_s = time.monotonic() - started
        assert second.find_element(*_by(".content")).text.strip()
        s2 = stats_of(second)
        # the document was not read again
        assert s2["reused"] >= s1["prompt-tokens"] - 1 and s2["evaluated"] < 200, (s1, s2)
        _screenshot(browser, "web-page-long-document.png")
        print(f"\n10k-token document ({n_doc} tokens): first answer {first_s:.1f} s "
              f"(first words after {s1['first-token-ms'] / 1000:.1f} s; {s1['text']}); "
              f"second answer {second_s:.1f} s (first words after {s2['first-token-ms'] / 1000:.1f} s; "
              f"{s2['text']})")
    finally:
        srv.stop()
