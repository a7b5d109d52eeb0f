"""The web app in a real headless Chromium against a live API process and a real worker.

A person's whole path: sign up, drop a recording, watch it reach done without reloading, read the
transcript with two speakers, click to play from a segment, rename a speaker, export SRT, message a
second user whose open inbox shows it live, and find another user's meeting a 404. Every wait is on
a condition with a generous bound (a loaded 2-core machine), never a fixed sleep.
"""

from __future__ import annotations

import base64
import re
import threading

import pytest

from iam_cluster.web.render import clock
from iam_cluster.worker.loop import Worker
from tests.fixtures.api import live_apis
from tests.fixtures.browser import synthetic_transcript

pytestmark = pytest.mark.slow

#: Bounds (milliseconds) for UI conditions and for the whole transcription job on a loaded CPU.
UI_MS = 30_000
JOB_MS = 300_000
PASSWORD = "correct horse 1"


@pytest.fixture
def api_url(api_settings):
    """A live API process (uvicorn) on the test database; yields its base URL."""
    with live_apis(api_settings) as (url,):
        yield url


@pytest.fixture
def site(api_url, api_settings, runner):
    """The live API and a worker thread on the test database; yields the base URL."""
    worker, stop = Worker(api_settings, runner=runner), threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"poll_seconds": 1.0}, daemon=True)
    thread.start()
    try:
        yield api_url
    finally:
        stop.set()
        thread.join(timeout=60)


def watched(context):
    """A page whose script errors and CSP violations are collected in ``page.problems``."""
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda exc: page.problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and "Content Security Policy" in msg.text
            and page.problems.append(msg.text))
    page.set_default_timeout(UI_MS)
    return page


def unlabelled(page) -> list[str]:
    """Visible form controls without an accessible name (label, aria-label or aria-labelledby)."""
    return page.evaluate("""() => [...document.querySelectorAll('input, textarea, select, button')]
        .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                      && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
        .map(el => el.outerHTML.slice(0, 80))""")


def sign_up(page, base: str, email: str) -> None:
    page.goto(f"{base}/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{base}/meetings/new")


def drop_file(page, selector: str, path, mime: str) -> None:
    """Drops ``path`` on ``selector`` the way a person's drag and drop does (a DataTransfer with a File)."""
    data = base64.b64encode(path.read_bytes()).decode()
    page.evaluate("""([selector, data, name, mime]) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: mime}));
        const target = document.querySelector(selector);
        for (const type of ['dragenter', 'dragover', 'drop'])
            target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", [selector, data, path.name, mime])


def test_a_person_uploads_reads_exports_and_messages(site, browser, screenshot, data_dir):
    alice_ctx, bob_ctx = browser.new_context(accept_downloads=True), browser.new_context()
    alice, bob = watched(alice_ctx), watched(bob_ctx)

    alice.goto(f"{site}/login")
    screenshot(alice, "01-sign-in")
    sign_up(alice, site, "alice@example.com")
    assert unlabelled(alice) == []
    screenshot(alice, "02-new-meeting")

    # Upload by drag and drop; the page then follows the job live: no navigation, no reload.
    alice.get_by_label("Title").fill("Two speakers")
    drop_file(alice, "#drop", data_dir / "sample.wav", "audio/wav")
    assert "sample.wav" in alice.locator("#file-name").inner_text()
    alice.evaluate("window.__sameDocument = true")
    alice.get_by_role("button", name="Upload and transcribe").click()
    alice.wait_for_selector("#job:not([hidden])")
    alice.wait_for_selector('#job[data-state="queued"], #job[data-state="processing"], #job[data-state="completed"]')
    screenshot(alice, "03-progress")
    alice.wait_for_selector('#job[data-state="completed"]', timeout=JOB_MS)
    assert alice.evaluate("window.__sameDocument") is True
    assert alice.locator("#job-progress").get_attribute("value") == "100"
    screenshot(alice, "04-done")

    # The transcript: the clip's words and two speakers, each in its colour.
    alice.get_by_role("link", name="Open the transcript").click()
    alice.wait_for_selector("#transcript .seg")
    meeting_url = alice.url
    text = alice.locator("#transcript").inner_text()
    for word in ("Diane", "New Jersey", "Chicago"):
        assert word in text
    speakers = alice.eval_on_selector_all("#transcript .who", "els => [...new Set(els.map(e => e.dataset.spk))]")
    assert sorted(speakers) == ["SPEAKER_00", "SPEAKER_01"]
    colours = alice.eval_on_selector_all(
        "#transcript .seg", "els => [...new Set(els.map(e => getComputedStyle(e).borderLeftColor))]")
    assert len(colours) == 2
    assert unlabelled(alice) == []
    # The worker computed the meeting's insights after transcribing it: the panel shows them.
    assert alice.get_by_role("heading", name="Insights").is_visible()
    assert alice.locator("#insights").inner_text().strip()
    screenshot(alice, "05-transcript")

    # Click a segment (a later one), then a word: the audio element's position moves there.
    alice.wait_for_function("() => document.getElementById('audio').readyState >= 1")
    segment = alice.locator("#transcript .seg").nth(-2)
    start = float(segment.get_attribute("data-t"))
    segment.locator(".ts").click()
    alice.wait_for_function(f"() => Math.abs(document.getElementById('audio').currentTime - {start}) < 0.6")
    word = alice.locator("#transcript .seg p span").nth(5)
    at = float(word.get_attribute("data-t"))
    word.click()
    alice.wait_for_function(f"() => Math.abs(document.getElementById('audio').currentTime - {at}) < 0.6")
    alice.evaluate("document.getElementById('audio').pause()")

    # Rename a speaker: shown at once, kept after a reload, used by the exports.
    alice.get_by_label("SPEAKER_00").fill("Sheila")
    alice.get_by_role("button", name="Save names").click()
    alice.wait_for_selector("#speakers-status:has-text('Names saved')")
    alice.reload()
    assert "Sheila" in alice.locator('#transcript .who[data-spk="SPEAKER_00"]').first.inner_text()
    with alice.expect_download() as download:
        alice.get_by_role("link", name="SRT").click()
    srt = download.value.path().read_text(encoding="utf-8")
    assert download.value.suggested_filename == "two-speakers.srt"
    assert re.search(r"\d\d:\d\d:\d\d,\d{3} --> ", srt) and "[Sheila]" in srt and "Chicago" in srt

    # A phone-width screen: nothing wider than the viewport.
    alice.set_viewport_size({"width": 390, "height": 844})
    assert alice.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(alice, "06-transcript-phone")
    alice.set_viewport_size({"width": 1280, "height": 800})

    # Search finds the meeting by a word of its transcript.
    alice.goto(f"{site}/meetings?q=chicago")
    assert alice.get_by_role("link", name="Two speakers").is_visible()
    screenshot(alice, "07-meetings-search")
    alice.goto(f"{site}/billing")
    assert alice.locator("#minutes-used").inner_text() != "0"
    screenshot(alice, "08-billing")

    # An API key: created on its page (shown once), usable as a bearer credential, then revoked.
    alice.goto(f"{site}/api-keys")
    alice.get_by_label("Name").fill("archive uploader")
    alice.get_by_role("button", name="Create key").click()
    alice.wait_for_selector("#new-key-shown:not([hidden])")
    key = alice.locator("#new-key-value").input_value()
    assert key.startswith("iam_")
    assert unlabelled(alice) == []
    screenshot(alice, "09-api-keys")
    listed = alice.request.get(f"{site}/api/v1/meetings", headers={"Authorization": f"Bearer {key}"})
    assert listed.status == 200 and listed.json()["total"] == 1
    alice.reload()
    alice.get_by_role("button", name="Revoke the key archive uploader").click()
    alice.wait_for_selector(".keys .status-failed:has-text('revoked')")
    assert alice.request.get(f"{site}/api/v1/meetings", headers={"Authorization": f"Bearer {key}"}).status == 401

    # Bob's open inbox shows Alice's message without reloading, with the unread badge.
    sign_up(bob, site, "bob@example.com")
    bob.goto(f"{site}/inbox")
    bob.wait_for_function("() => document.body.dataset.socket === 'open'")
    bob.evaluate("window.__sameDocument = true")
    alice.goto(f"{site}/inbox")
    alice.get_by_text("Write a message").click()
    alice.get_by_label("To (email)").fill("bob@example.com")
    alice.get_by_label("Subject", exact=True).fill("Minutes of the call")
    alice.get_by_label("Message", exact=True).fill("The transcript is ready.")
    alice.get_by_role("button", name="Send").click()
    alice.wait_for_selector("#compose-status:has-text('Sent to bob@example.com')")
    screenshot(alice, "10-inbox-sent")
    bob.wait_for_selector(".messages .message.unread:has-text('Minutes of the call')")
    bob.wait_for_selector("#unread-badge:not([hidden]):has-text('1')")
    assert bob.evaluate("window.__sameDocument") is True
    assert unlabelled(bob) == []
    screenshot(bob, "11-inbox-live")

    # Star it from the list, then open it (marks it read).
    bob.locator(".messages .star").first.click()
    bob.wait_for_selector('.messages .star[aria-pressed="true"]')
    bob.get_by_role("link", name=re.compile("Minutes of the call")).click()
    bob.wait_for_selector("h1:has-text('Minutes of the call')")
    assert bob.locator("#unread-badge").is_hidden()
    screenshot(bob, "12-message")

    # Alice's meeting is not Bob's to see: a 404 page, and no audio.
    response = bob.goto(meeting_url)
    assert response.status == 404 and bob.get_by_role("heading", name="Not found").is_visible()
    assert "Two speakers" not in bob.content()
    screenshot(bob, "13-not-found")
    assert bob.request.get(meeting_url.replace("/meetings/", "/api/v1/meetings/") + "/audio").status == 404

    assert alice.problems == [] and bob.problems == []
    alice_ctx.close()
    bob_ctx.close()


def test_the_transcript_page_of_a_one_hour_meeting_works(api_url, api_settings, browser, screenshot):
    """10,000 words in 3 speakers' turns (timed by benchmarks/web.py; here it must simply work)."""
    import psycopg
    from psycopg.types.json import Jsonb

    context = browser.new_context()
    page = watched(context)
    sign_up(page, api_url, "long@example.com")
    transcript = synthetic_transcript(words=10_000, seconds=3600.0, speakers=3)
    with psycopg.connect(api_settings.database.url, autocommit=True) as conn:
        (meeting_id,) = conn.execute(
            "INSERT INTO meetings (user_id, title, duration_seconds, transcript, processing_status) "
            "SELECT id, 'One hour', 3600, %s, 'completed' FROM users WHERE email = 'long@example.com' RETURNING id",
            [Jsonb(transcript)]).fetchone()
    page.goto(f"{api_url}/meetings/{meeting_id}")
    assert page.locator("#transcript .seg p span").count() == 10_000
    assert page.locator("#transcript .seg").count() == len(transcript["segments"])
    assert page.locator("#speakers input").count() == 3
    last = page.locator("#transcript .seg").last
    last.scroll_into_view_if_needed()
    assert last.locator(".ts").text_content() == clock(transcript["segments"][-1]["start"])
    assert last.locator(".ts").is_visible()
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, "14-one-hour-transcript-phone")
    assert page.problems == []
    context.close()
