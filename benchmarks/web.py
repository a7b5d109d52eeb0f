"""The web app's page weight and speed in headless Chromium, against the plain-text export as the floor.

Measures, on a live API process (its own uvicorn) and the distribution's Chromium:

- first page load (a fresh browser, empty cache) of the sign-in page and of the signed-in meetings
  list: bytes transferred (document + every subresource) and the server's time to first byte;
- the transcript page of a synthetic 1-hour meeting (``--words``, default 10,000 words in 3 speakers'
  turns): time from navigation start to the page loaded and painted (``load`` event + two animation
  frames), median and worst of ``--rounds`` fresh loads, next to the same transcript's plain-text
  export opened in the same browser (the floor: no markup, no script).

Targets (issue 19): first load <= 200 KB and <= 300 ms server time; transcript page <= 1 s.

Example::

    python benchmarks/web.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import uuid
from pathlib import Path

import psycopg

from api_load import drop_database, free_port, prepare_database, start, wait_up
from common import command_line, cpu_name, save_report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.browser import chromium_path, launch, synthetic_transcript  # noqa: E402

#: navigation start -> load event, then two animation frames (the page has been painted).
LOADED_AND_PAINTED = """() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    done({ms: performance.now(), ttfb: nav.responseStart - nav.requestStart, dcl: nav.domContentLoadedEventEnd,
          bytes: nav.transferSize + performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, 0)});
})))"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--words", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--label", default="cpu")
    return p.parse_args(argv)


def seed(url: str, words: int, seconds: float) -> tuple[str, str]:
    """A user with a web session and a meeting holding a synthetic transcript; (session token, meeting id)."""
    from psycopg.types.json import Jsonb

    from iam_cluster.web.session import hash_token

    token = uuid.uuid4().hex + uuid.uuid4().hex
    transcript = synthetic_transcript(words, seconds)
    text = " ".join(s["text"].strip() for s in transcript["segments"])
    with psycopg.connect(url, autocommit=True) as conn:
        (user_id,) = conn.execute("INSERT INTO users (email, password_hash) VALUES ('web@example.com', 'x') "
                                  "RETURNING id").fetchone()
        conn.execute("INSERT INTO web_sessions (user_id, token_hash, expires_at) VALUES (%s, %s, now() + "
                     "interval '1 day')", (user_id, hash_token(token)))
        (meeting_id,) = conn.execute(
            "INSERT INTO meetings (user_id, title, duration_seconds, transcript, transcription_text, "
            "processing_status) VALUES (%s, 'One hour', %s, %s, %s, 'completed') RETURNING id",
            (user_id, seconds, Jsonb(transcript), text)).fetchone()
    return token, str(meeting_id)


def load(browser, url: str, cookie: str | None, base: str) -> dict:
    """One load of ``url`` in a fresh context (empty cache); its timings and bytes."""
    context = browser.new_context()
    if cookie:
        context.add_cookies([{"name": "iam_session", "value": cookie, "url": base}])
    page = context.new_page()
    try:
        page.goto(url, wait_until="load")
        return page.evaluate(LOADED_AND_PAINTED)
    finally:
        context.close()


def measure(browser, base: str, cookie: str, meeting_id: str, rounds: int) -> dict[str, list[dict]]:
    pages = {"sign-in page (/login)": (f"{base}/login", None),
             "meetings list (/meetings, signed in)": (f"{base}/meetings", cookie),
             "transcript page": (f"{base}/meetings/{meeting_id}", cookie),
             "plain-text export (floor)": (f"{base}/api/v1/meetings/{meeting_id}/transcript?format=txt", cookie)}
    for url, c in pages.values():  # warm-up: server caches, template compilation
        load(browser, url, c, base)
    return {name: [load(browser, url, c, base) for _ in range(rounds)] for name, (url, c) in pages.items()}


def main(argv=None) -> None:
    args = parse_args(argv)
    if chromium_path() is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or set IAM_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    name, url, env = prepare_database()
    proc = None
    try:
        cookie, meeting_id = seed(url, args.words, args.seconds)
        port = free_port()
        proc = start("from iam_cluster.api.app import create_app\napp = create_app()", port, env)
        base = f"http://127.0.0.1:{port}"
        asyncio.run(wait_up(base + "/health"))
        with sync_playwright() as p:
            browser = launch(p)
            try:
                results = measure(browser, base, cookie, meeting_id, args.rounds)
            finally:
                browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        drop_database(name)
    lines = [f"# Web app: {args.label}", "", f"Command: `{command_line()}`", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; one uvicorn process; headless Chromium "
             f"({chromium_path()}); a fresh browser context (empty cache) per load; {args.rounds} loads each; "
             f"transcript: {args.words} words over {args.seconds:.0f} s, 3 speakers", "",
             "| page | KB transferred | server TTFB ms (median / worst) | loaded+painted ms (median / worst) |",
             "|---|---:|---:|---:|"]
    for page, runs in results.items():
        ttfb, ms = [r["ttfb"] for r in runs], [r["ms"] for r in runs]
        lines.append(f"| {page} | {max(r['bytes'] for r in runs) / 1024:.1f} | {statistics.median(ttfb):.0f} / "
                     f"{max(ttfb):.0f} | {statistics.median(ms):.0f} / {max(ms):.0f} |")
    first = [r for name, runs in results.items() if name.startswith(("sign-in", "meetings")) for r in runs]
    page = [r["ms"] for r in results["transcript page"]]
    floor = [r["ms"] for r in results["plain-text export (floor)"]]
    lines += ["", f"First loads: worst {max(r['bytes'] for r in first) / 1024:.1f} KB (target <= 200), "
                  f"worst server time {max(r['ttfb'] for r in first):.0f} ms (target <= 300).",
              f"Transcript page of {args.words} words: median {statistics.median(page):.0f} ms, worst {max(page):.0f} ms "
              f"(target <= 1000); **{statistics.median(page) / statistics.median(floor):.2f}x** the plain-text "
              "export of the same words."]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"web-{args.label}.md")


if __name__ == "__main__":
    main()
