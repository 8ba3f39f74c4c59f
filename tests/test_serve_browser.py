"""The page of `minigpt serve` driven in a real headless browser (Debian's Chromium through
selenium's WebDriver): type, send with Enter, see the text stream in, stop it, notice that the
server is gone; an instruction-tuned model on a phone-sized window; a classifier's text box.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install -y chromium chromium-driver`,
which .ci/run does) and selenium (the test extra); without them the tests are skipped, saying so.
"""

import os
import shutil
import time

import pytest

from support.serve_support import SlowModel, running, save_classifier, save_run, tiny_model
from minigpt.serve import ServedModel, load_served_model
from minigpt.serve.app import create_app
from minigpt.tokenizer import get_encoding

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _missing() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return (f"the browser test needs Debian's Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install -y chromium chromium-driver (.ci/run installs them)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the browser test needs selenium: pip install -e \".[test]\""
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(condition, timeout=15.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


def by_id(driver, name):
    return driver.find_element("id", name)


def set_value(driver, name, value):
    element = by_id(driver, name)
    element.clear()
    element.send_keys(str(value))


def served(model, kind="base"):
    tokenizer = get_encoding("gpt2")
    return ServedModel(model, tokenizer, kind, "tiny", "test", tokenizer.eot_token)


def test_chat_streams_stops_and_notices_that_the_server_is_gone(browser):
    from selenium.webdriver.common.keys import Keys

    model = SlowModel(tiny_model(seed=1, context_length=512), delay=0.03)  # about 30 tokens/s: a stream to watch
    with running(create_app(served(model), max_tokens=400, batch_window=0)) as url:
        browser.get(url + "/")
        wait_until(lambda: "tiny (base)" in by_id(browser, "model-name").text, message="the model's name")
        assert "parameters" in by_id(browser, "model-size").text and "context 512" in by_id(browser, "model-size").text
        set_value(browser, "max-tokens", 400)
        prompt = by_id(browser, "prompt")
        prompt.send_keys("Every effort", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "moves you")
        assert prompt.get_attribute("value") == "Every effort\nmoves you"  # Shift+Enter: a new line, nothing sent
        assert not browser.find_elements("css selector", ".message")
        prompt.send_keys(Keys.ENTER)
        user = wait_until(lambda: browser.find_elements("css selector", ".message.user"), message="the message")
        assert user[0].text == "Every effort\nmoves you" and prompt.get_attribute("value") == ""
        answer = browser.find_element("css selector", ".message.assistant")
        first = wait_until(lambda: len(answer.text) > len("Every effort moves you") + 5 and len(answer.text), message="tokens")
        wait_until(lambda: len(answer.text) > first + 5, message="more tokens: a stream")
        wait_until(lambda: "tokens/s" in by_id(browser, "tps").text, message="tokens per second")
        assert by_id(browser, "send").get_attribute("disabled") and not by_id(browser, "stop").get_attribute("disabled")
        by_id(browser, "stop").click()
        wait_until(lambda: "(stopped)" in answer.text, message="the stopped mark")
        assert not by_id(browser, "send").get_attribute("disabled")
        time.sleep(0.3)
        calls = model.calls
        time.sleep(0.3)
        assert model.calls == calls < 300  # the server stopped generating when the page stopped reading
        assert not by_id(browser, "server-gone").is_displayed()
    wait_until(lambda: by_id(browser, "server-gone").is_displayed(), timeout=10, message="the server-gone message")
    assert "not answering" in by_id(browser, "server-gone").text


def test_an_instruction_tuned_model_on_a_phone(browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    app = create_app(load_served_model(save_run(tmp_path / "assistant", tiny_model(seed=2), task="instruct")), max_tokens=20)
    browser.set_window_size(390, 844)  # a phone's viewport
    try:
        with running(app) as url:
            browser.get(url + "/")
            wait_until(lambda: "assistant (instruct)" in by_id(browser, "model-name").text, message="the model's name")
            assert "Instruction-tuned" in by_id(browser, "mode-note").text
            by_id(browser, "prompt").send_keys("Name a color.", Keys.ENTER)
            answer = wait_until(lambda: browser.find_elements("css selector", ".message.assistant:not(.streaming)"),
                                message="a whole answer")[0]
            assert answer.text.strip() and "error" not in answer.text
            assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
            send, stop = by_id(browser, "send").rect, by_id(browser, "stop").rect
            assert send["y"] == stop["y"] and send["x"] + send["width"] <= stop["x"]  # the buttons side by side under the box
    finally:
        browser.set_window_size(1100, 900)


def test_a_classifier_gets_a_text_box_with_label_and_probabilities(browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    with running(create_app(load_served_model(save_classifier(tmp_path / "spam")))) as url:
        browser.get(url + "/")
        wait_until(lambda: by_id(browser, "classify").is_displayed(), message="the classify box")
        assert not by_id(browser, "chat").is_displayed()
        by_id(browser, "classify-text").send_keys("You won a prize! Call now", Keys.ENTER)
        label = wait_until(lambda: browser.find_elements("css selector", "#classify-result .label"), message="a label")[0]
        assert label.text in ("ham", "spam")
        bars = browser.find_elements("css selector", "#classify-result .bar")
        assert [bar.find_element("css selector", ".name").text for bar in bars] == ["ham", "spam"]
        percents = [float(bar.find_element("css selector", ".value").text.rstrip(" %")) for bar in bars]
        assert abs(sum(percents) - 100) < 0.2 and max(percents) == percents[["ham", "spam"].index(label.text)]
        for bar, percent in zip(bars, percents):  # each bar drawn as long as its probability
            track, fill = (bar.find_element("css selector", part).rect["width"] for part in (".track", ".fill"))
            assert abs(fill - track * percent / 100) < 2
