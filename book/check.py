"""Open every page of the built book in headless Chromium and check what a reader would see.

    python book/check.py                      # checks build/book/html (build it first)

For each page: the math typeset (MathJax rendered every formula, none is left as raw ``$$`` or
``\\(`` text, none shows a MathJax error), every image loaded, every link inside the book points to
a page that exists and, for ``#anchor`` links, to an element with that id, and no request left the
machine (the pages are served on 127.0.0.1; any request elsewhere is blocked and reported).
Chromium is Debian's (``apt-get install chromium``), driven by Playwright (``pip install
playwright``, which downloads nothing when given the browser's path).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [  # no background services: this machine's network is closed
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ID = re.compile(r'\bid="([^"]+)"')

# Run in the page: what the reader sees once MathJax has finished.
PAGE_REPORT = """async () => {
    if (window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
    const main = document.querySelector("main") || document.body;
    const prose = main.cloneNode(true);
    prose.querySelectorAll("pre, code, .cell_output, mjx-container, script")
        .forEach(e => e.remove());
    return {
        math: main.querySelectorAll(".math").length,
        typeset: main.querySelectorAll(".math mjx-container, mjx-container.MathJax").length,
        untypeset: [...main.querySelectorAll(".math")]
            .filter(e => !e.querySelector("mjx-container")).map(e => e.textContent.slice(0, 80)),
        errors: [...main.querySelectorAll("mjx-merror")].map(e => e.textContent.slice(0, 80)),
        raw: (prose.textContent.match(/\\$\\$|\\\\\\(|\\\\\\[/g) || []).length,
        images: [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0]),
        links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    };
}"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request is noise here
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``folder`` on 127.0.0.1 at a free port, in a thread; returns the server and its URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages_of(html: Path) -> list[str]:
    """The book's pages, relative to its folder: the index and every chapter."""
    return ["index.html"] + sorted(str(p.relative_to(html)) for p in html.glob("chapters/*.html"))


def check_book(html: Path) -> tuple[dict[str, dict], list[str]]:
    """Open every page; returns each page's report and the list of problems (empty: all good)."""
    from playwright.sync_api import sync_playwright

    if not (html / "index.html").exists():
        raise SystemExit(f"no book at {html}: build it first with `python book/build.py`")
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's Chromium "
                         "(apt-get install chromium)")
    server, root = serve(html)
    outside: list[str] = []  # requests that tried to leave the machine

    def route(request_route):
        if urlparse(request_route.request.url).hostname == "127.0.0.1":
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    problems, reports = [], {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.route("**/*", route)
            for name in pages_of(html):
                page.goto(root + name, wait_until="load")
                report = reports[name] = page.evaluate(PAGE_REPORT)
                problems += page_problems(name, report, html, root)
            browser.close()
    finally:
        server.shutdown()
    problems += [f"a request left the machine: {url}" for url in sorted(set(outside))]
    return reports, problems


def page_problems(name: str, report: dict, html: Path, root: str) -> list[str]:
    """What is wrong on one page, from its report."""
    problems = [f"{name}: formula not typeset: {text!r}" for text in report["untypeset"]]
    problems += [f"{name}: MathJax error: {text!r}" for text in report["errors"]]
    if report["raw"]:
        problems.append(f"{name}: {report['raw']} raw math delimiters ($$, \\(, \\[) in the text")
    problems += [f"{name}: image did not load: {src}" for src, ok in report["images"] if not ok]
    for link in report["links"]:
        url, fragment = urldefrag(link)
        if not url.startswith(root):
            continue  # a link out of the book (none is followed)
        target = html / url[len(root):]
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"{name}: broken link {link}")
        elif fragment and fragment not in ID.findall(target.read_text(encoding="utf-8")):
            problems.append(f"{name}: link to a missing anchor {link}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Read every page of the built book in headless "
                                                 "Chromium: math, images, links, no request out.")
    parser.add_argument("html", nargs="?", type=Path, default=REPO / "build" / "book" / "html",
                        help="the built book's folder (default: build/book/html)")
    html = parser.parse_args(argv).html
    reports, problems = check_book(html)
    formulas = sum(r["typeset"] for r in reports.values())
    images = sum(len(r["images"]) for r in reports.values())
    print(f"book: {len(reports)} pages, {formulas} formulas typeset, {images} images")
    for problem in problems:
        print(f"book: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
