"""The built book in a real browser, from disk, with no network (docs/design.md, "The book").

Headless Chromium (Debian's ``chromium`` package, ``/usr/bin/chromium``; never a downloaded
browser) driven through Playwright opens every chapter of ``_toc.yml`` as a ``file://`` page
with every request to another host refused, and checks that:

* every chapter renders: a title, body text, no JavaScript error, no missing local file;
* maths is typeset (MathJax's ``mjx-container`` elements, no ``mjx-merror``);
* the static explorer's slider changes the image shown (ipywidgets ``jslink`` in the page);
* audio players are present and decode (every page whose notebook has audio outputs, and
  the corpus chapter once it is a notebook);
* no page requests, or names in a script, style or media tag, another host.

Screenshots of every chapter (and of the explorer before and after moving the slider) are
saved in ``book/_build/screenshots/`` (``VIT1D_SCREENSHOTS`` to change).

The book: ``VIT1D_BOOK_HTML`` names a built book to test as it is; otherwise the fixture runs
the (incremental) smoke pipeline ``python -m vit1d.cli.book --preset smoke`` first, which
reruns nothing when ``PRESET=smoke make book`` has just built it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# the first test may build the smoke book (html_dir) before the browser starts
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("VIT1D_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(os.environ.get("VIT1D_SCREENSHOTS", ROOT / "book" / "_build" / "screenshots"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    # networking off: no name resolves, so nothing can leave the machine
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def _chapters() -> list[str]:
    sys.path.insert(0, str(ROOT / "src"))
    from vit1d.book.site import toc_files

    return toc_files(ROOT)


CHAPTERS = _chapters()


@pytest.fixture(scope="module")
def html_dir() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's browser (apt-get install chromium)")
    pytest.importorskip(
        "playwright.sync_api",
        reason="pip install playwright (it drives Debian's chromium; no browser download)",
    )
    given = os.environ.get("VIT1D_BOOK_HTML")
    if given:
        html = Path(given).resolve()
    else:
        proc = subprocess.run(
            [sys.executable, "-m", "vit1d.book.pipeline", "--preset", "smoke"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"the smoke pipeline failed:\n{proc.stdout}\n{proc.stderr}"
        html = ROOT / "book" / "_build" / "html"
    assert (html / "index.html").is_file(), f"no built book in {html}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    return html


class Visit:
    """One page load: what it requested, what failed, what it logged."""

    def __init__(self, page):
        self.page = page
        self.external: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []


@pytest.fixture(scope="module")
def browser(html_dir):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser, html_dir):
    contexts = []

    def _open(name: str, width: int = 1280, height: int = 900) -> Visit:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        visit = Visit(page)

        def refuse(route):
            visit.external.append(route.request.url)
            route.abort()

        ctx.route(re.compile(r"^(?!(file|data|blob|about):).*"), refuse)
        page.on(
            "request",
            lambda r: None if r.url.startswith(LOCAL_SCHEMES) else visit.external.append(r.url),
        )
        page.on("requestfailed", lambda r: visit.failed.append(f"{r.url} ({r.failure})"))
        page.on("pageerror", lambda e: visit.errors.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m: visit.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        url = (html_dir / f"{name}.html").as_uri()
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        return visit

    yield _open
    for ctx in contexts:
        ctx.close()


def _notebook(name: str) -> dict | None:
    path = ROOT / "book" / f"{name}.ipynb"
    return json.loads(path.read_text()) if path.is_file() else None


def _audio_outputs(nb: dict | None) -> int:
    """Number of audio players among a notebook's outputs, and inside its saved widgets (an
    explorer's ``HTML`` widget holding a player, :func:`vit1d.viz.widgets.static_explorer`)."""
    if nb is None:
        return 0
    count = 0
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            count += html.count("<audio")
    state = nb.get("metadata", {}).get("widgets", {})
    state = state.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for model in state.values():
        if model.get("model_name") == "HTMLModel":
            count += str(model.get("state", {}).get("value", "")).count("<audio")
    return count


def _wait_for_maths(page) -> None:
    if page.locator(".math").count():
        page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
        page.wait_for_function(
            "document.querySelectorAll('mjx-container').length >= "
            "document.querySelectorAll('.math').length",
            timeout=20_000,
        )


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_renders_offline(open_page, chapter):
    visit = open_page(chapter)
    page = visit.page
    _wait_for_maths(page)
    page.screenshot(path=str(SHOTS / f"{chapter}.png"), full_page=True)
    title = page.locator("main h1").first
    assert title.count() == 1 and title.inner_text().strip(), f"{chapter}: no title"
    text = page.locator("main").inner_text()
    assert len(text) > 200, f"{chapter}: almost no text"
    assert "Traceback" not in text, f"{chapter}: shows a Python traceback"
    assert "{glue" not in text, f"{chapter}: a glue role was not replaced by its value"
    broken = page.evaluate(
        "[...document.querySelectorAll('main img')]"
        ".filter(i => i.offsetParent !== null && !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src.slice(0, 80))"
    )
    assert not broken, f"{chapter}: images that do not load: {broken}"
    assert not visit.external, f"{chapter} requested other hosts: {visit.external}"
    assert not visit.failed, f"{chapter}: requests failed: {visit.failed}"
    assert not visit.errors, f"{chapter}: JavaScript errors: {visit.errors}"


def test_maths_is_typeset(open_page):
    pages = [c for c in CHAPTERS if _notebook(c) is not None or c == "intro"]
    typeset = 0
    for chapter in pages:
        page = open_page(chapter).page
        n_math = page.locator(".math").count()
        if not n_math:
            continue
        _wait_for_maths(page)
        assert page.locator("mjx-merror").count() == 0, f"{chapter}: MathJax errors"
        # the CHTML output draws glyphs with its own web fonts, loaded from _static
        assert page.locator("mjx-container mjx-c").count() > 0, f"{chapter}: no glyphs"
        typeset += n_math
    assert typeset > 0, "no chapter has maths to typeset (the method chapter should)"


def _shown_image(page, explorer) -> dict:
    """Caption and a checksum of the picture the explorer shows now."""
    return explorer.evaluate(
        """async (root) => {
            const imgs = [...root.querySelectorAll('img')].filter(i => i.offsetParent !== null);
            const caption = [...root.querySelectorAll('.widget-html-content')]
                .filter(e => e.offsetParent !== null).map(e => e.innerText).join('|');
            if (imgs.length !== 1) return {caption, n: imgs.length, sum: null};
            const bytes = new Uint8Array(await (await fetch(imgs[0].src)).arrayBuffer());
            let sum = 0;
            for (let i = 0; i < bytes.length; i++) sum = (sum * 31 + bytes[i]) % 1000000007;
            return {caption, n: 1, sum, size: bytes.length, width: imgs[0].naturalWidth};
        }"""
    )


def test_explorer_slider_changes_image(open_page):
    assert "10_explorer" in CHAPTERS
    visit = open_page("10_explorer")
    page = visit.page
    page.wait_for_selector(".vit1d-explorer .widget-slider", timeout=20_000)
    explorers = page.locator(".vit1d-explorer")
    assert explorers.count() >= 1
    explorer = explorers.first
    explorer.scroll_into_view_if_needed()
    before = _shown_image(page, explorer)
    assert before["n"] == 1 and before["size"] > 1000 and before["width"] > 100, before
    explorer.screenshot(path=str(SHOTS / "10_explorer_slider_before.png"))
    handle = explorer.locator(".noUi-handle, .ui-slider-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    for _ in range(50):  # the link runs in the page; give it up to 5 s
        after = _shown_image(page, explorer)
        if after["caption"] != before["caption"]:
            break
        page.wait_for_timeout(100)
    explorer.screenshot(path=str(SHOTS / "10_explorer_slider_after.png"))
    assert after["n"] == 1, after
    assert after["caption"] != before["caption"], (before, after)
    assert after["sum"] != before["sum"], "the slider moved but the picture stayed the same"
    assert not visit.external and not visit.failed and not visit.errors


def test_audio_players_present(open_page):
    expected = {c: _audio_outputs(_notebook(c)) for c in CHAPTERS}
    if _notebook("02_corpus") is not None:
        assert expected["02_corpus"] > 0, "the corpus chapter has no audio players"
    with_audio = [c for c, n in expected.items() if n]
    assert with_audio, "no chapter has an audio player"
    for chapter in with_audio:
        page = open_page(chapter).page
        players = page.locator("audio")
        assert players.count() == expected[chapter], chapter
        durations = page.evaluate(
            """async () => Promise.all([...document.querySelectorAll('audio')].map(a =>
                new Promise(resolve => {
                    if (a.readyState >= 1) return resolve(a.duration);
                    a.addEventListener('loadedmetadata', () => resolve(a.duration));
                    a.addEventListener('error', () => resolve(-1));
                    a.load();
                    setTimeout(() => resolve(a.readyState >= 1 ? a.duration : -2), 10000);
                })))"""
        )
        assert all(d and d > 0 for d in durations), f"{chapter}: audio does not decode {durations}"


def test_no_page_names_another_host(html_dir):
    from vit1d.book.site import external_references

    assert external_references(html_dir) == []
