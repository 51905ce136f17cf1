"""The observer's page in a real browser (headless Chromium through selenium).

Skipped when selenium, Chromium or chromedriver is missing, except under CI
(``CI`` set), where that is a failure. ``OTPY_WRITE_SCREENSHOT=1`` also copies
the screenshot to ``docs/observer.png``, the README's picture.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import otpy
import otpy.observer

from .observer_helpers import BACKLOG, USERS, sample_tree, text

pytestmark = pytest.mark.timeout(90)

DOCS_PICTURE = Path(__file__).resolve().parents[2] / "docs" / "observer.png"
PAGE_WAIT = 15.0
"""Seconds the page gets to show something (it refreshes every second)."""


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}; CI must install it (apt-get install chromium chromium-driver)")
    pytest.skip(f"{what}; the page test needs selenium, Chromium and chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (started before any test's runtime)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install selenium)")
    binary = next(
        (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
    )
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _missing("Chromium or chromedriver is not on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--window-size=1440,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PAGE_WAIT, poll_frequency=0.05).until(condition, message=what)


def save_page(driver: Any, path: Path) -> None:
    """A picture of the whole page, also what lies below the window."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.clientWidth")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def attrs_of(driver: Any, selector: str, attr: str) -> list[str]:
    """``attr`` of every element ``selector`` finds, read at once (the page redraws every second)."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]))",
        selector,
        attr,
    )


def text_of(driver: Any, selector: str) -> str:
    """The text of the first element ``selector`` finds, or ''."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", selector
    )


def click(driver: Any, selector: str) -> None:
    """Click what ``selector`` finds, again if the page redrew it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt(d: Any) -> bool:
        try:
            d.find_element("css selector", selector).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(driver, attempt, f"click {selector}")


def first_row(driver: Any) -> str | None:
    found = attrs_of(driver, "#procs tbody tr", "data-pid")
    return found[0] if found else None


def test_page_shows_the_tree_sorts_the_table_and_opens_a_detail_pane(
    runtime: otpy.Runtime, browser: Any, tmp_path: Path
) -> None:
    with sample_tree() as tree, otpy.observer.serve(runtime=runtime) as srv:
        browser.get(srv.url)

        # The tree: the real pids and names, with the restart count of the killed cache.
        wanted = {text(tree.root), text(tree.cache), text(tree.mailer), text(tree.sessions)}
        wanted |= {text(pid) for pid in tree.users}
        wait_for(
            browser,
            lambda d: wanted <= set(attrs_of(d, "#tree .node", "data-pid")),
            "the tree shows every supervised process",
        )
        tree_text = text_of(browser, "#tree")
        for label in ("app", "cache", "mailer", "sessions", "session-alice", "one_for_one"):
            assert label in tree_text
        assert f"<{text(tree.cache)}>" in tree_text
        assert "\u21bb 1" in text_of(browser, f'#tree .node[data-pid="{text(tree.cache)}"]')

        # The table: real pids and names.
        wait_for(
            browser,
            lambda d: wanted <= set(attrs_of(d, "#procs tbody tr", "data-pid")),
            "the table lists every supervised process",
        )
        cache_row = text_of(browser, f'#procs tbody tr[data-pid="{text(tree.cache)}"]')
        assert "cache" in cache_row and "GenServer" in cache_row

        # Sorting by mailbox length puts the backlogged mailer first.
        click(browser, 'th[data-sort="message_queue_len"]')
        wait_for(
            browser,
            lambda d: first_row(d) == text(tree.mailer),
            "sorted by mailbox length, the mailer comes first",
        )
        assert "sorted" in attrs_of(browser, 'th[data-sort="message_queue_len"]', "class")[0]
        assert str(BACKLOG) in text_of(browser, "#procs tbody tr")

        # Sorting by messages handled puts the cache first.
        click(browser, 'th[data-sort="reductions"]')
        wait_for(
            browser,
            lambda d: first_row(d) == text(tree.cache),
            "sorted by messages handled, the cache comes first",
        )

        # The detail pane of the mailer: its links, what it runs, and its stack.
        click(browser, f'#procs tbody tr[data-pid="{text(tree.mailer)}"]')
        wait_for(
            browser,
            lambda d: "handle_cast" in text_of(d, "#detail-stack"),
            "the detail pane shows the mailer's stack, in its handle_cast",
        )
        detail = text_of(browser, "#detail")
        assert "Mailer" in detail and "running" in detail
        assert text(tree.root) in attrs_of(browser, "#detail .peer", "data-peer")  # link, parent

        # A tree node opens its detail too: the sessions supervisor, linked to both sessions.
        click(browser, f'#tree .node[data-pid="{text(tree.sessions)}"]')
        wait_for(
            browser,
            lambda d: (
                {text(pid) for pid in tree.users} <= set(attrs_of(d, "#detail .peer", "data-peer"))
            ),
            "the detail pane of sessions lists its sessions as links",
        )
        assert len(USERS) == len(tree.users)

        # The picture: the mailer's detail, with the table sorted by mailbox length.
        click(browser, 'th[data-sort="message_queue_len"]')
        click(browser, f'#tree .node[data-pid="{text(tree.mailer)}"]')
        wait_for(
            browser,
            lambda d: (
                first_row(d) == text(tree.mailer) and "handle_cast" in text_of(d, "#detail-stack")
            ),
            "the mailer's detail, sorted by mailbox length",
        )
        picture = tmp_path / "observer.png"
        save_page(browser, picture)
        assert picture.stat().st_size > 10_000
        if os.environ.get("OTPY_WRITE_SCREENSHOT") == "1":
            DOCS_PICTURE.parent.mkdir(exist_ok=True)
            shutil.copyfile(picture, DOCS_PICTURE)


def test_page_sends_the_token_from_its_address(runtime: otpy.Runtime, browser: Any) -> None:
    with sample_tree() as tree, otpy.observer.serve(runtime=runtime, token="s3cret") as srv:
        browser.get(srv.url)  # no token: the page says it needs one
        wait_for(
            browser,
            lambda d: "token" in text_of(d, "#status"),
            "the page says that it needs a token",
        )
        browser.get(f"{srv.url}#token=s3cret")
        browser.refresh()  # a new fragment alone does not reload the page
        wait_for(
            browser,
            lambda d: text(tree.root) in attrs_of(d, "#tree .node", "data-pid"),
            "with the token the tree shows",
        )
        assert "live" in text_of(browser, "#status")
