"""The deliverer: a worker thread that posts due webhook deliveries and records how each went.

It sleeps on the webhook channel (``pg_notify`` at the commit that queued a delivery), so an event
goes out within moments of its job's end; due retries are found by polling. Deliveries are claimed
with ``FOR UPDATE SKIP LOCKED`` and held while in flight, so several workers never post one row
twice at once. A 2xx answer delivers; anything else retries with exponential backoff until the
retry horizon (a day by default), then the row is marked failed and stays in the log.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from iam_cluster.db.queries import QUERIES
from iam_cluster.settings import WebhookSettings
from iam_cluster.webhooks import CHANNEL, targets
from iam_cluster.webhooks.signing import HEADER, sign

log = logging.getLogger(__name__)
#: Deliveries claimed (and posted concurrently) per round.
BATCH = 16


class Deliverer:
    """Posts the outbox's due deliveries.

    Args:
        database_url: the queue's database.
        settings: timeouts, backoff, horizon, whether private targets are allowed.
        on_result: called with ``(event, outcome)`` per attempt (metrics); outcome is
            ``delivered``, ``retry`` or ``failed``.
    """

    def __init__(self, database_url: str, settings: WebhookSettings, on_result=None) -> None:
        self.database_url = database_url
        self.settings = settings
        self.on_result = on_result or (lambda event, outcome: None)
        self.client = httpx.Client(timeout=settings.timeout_s, follow_redirects=False,
                                   headers={"User-Agent": "iam-cluster-webhooks/1"})
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="iam-webhook")

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set (the worker runs this in a thread)."""
        listener = None
        while not stop.is_set():
            try:
                if listener is None or listener.closed:
                    listener = psycopg.connect(self.database_url, autocommit=True)
                    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                if self.deliver_due():
                    continue
                for _ in listener.notifies(timeout=self.settings.poll_s, stop_after=1):
                    pass
            except psycopg.OperationalError as exc:
                log.warning("webhook deliverer: database unreachable (%s); retrying", exc)
                listener = None
                stop.wait(2.0)
            except Exception:  # keep delivering; a row's hold expires and it is taken again
                log.exception("webhook deliverer: unexpected error")
                stop.wait(1.0)
        if listener is not None:
            listener.close()

    def deliver_due(self) -> int:
        """Claim and post one round of due deliveries; returns how many were attempted."""
        hold = self.settings.timeout_s * 2 + 5
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(QUERIES["webhook_claim_due"], {"limit": BATCH, "hold_seconds": hold}).fetchall()
            for row, (code, error) in zip(rows, self.pool.map(self._post, rows)):
                self._record(conn, row, code, error)
        return len(rows)

    def _post(self, row: dict) -> tuple[int | None, str | None]:
        """Post one delivery to the address its host was checked to resolve to."""
        body = msgspec.json.encode(row["payload"])
        try:
            address = targets.check(row["url"], self.settings.allow_private)[0]
        except targets.UnsafeTarget as exc:
            return None, exc.message
        parts = urlsplit(row["url"])
        pinned = urlunsplit(parts._replace(netloc=_netloc(address, parts.port)))
        headers = {"Content-Type": "application/json", HEADER: sign(row["secret"] or "", body),
                   "IAM-Event": row["event"], "IAM-Event-Id": str(row["event_id"]),
                   "IAM-Delivery-Id": str(row["id"]), "Host": parts.netloc.rsplit("@", 1)[-1]}
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        try:
            response = self.client.post(pinned, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    def _record(self, conn: psycopg.Connection, row: dict, code: int | None, error: str | None) -> None:
        if error is None:
            conn.execute(QUERIES["webhook_delivered"], {"id": row["id"], "status_code": code})
            self.on_result(row["event"], "delivered")
            return
        s = self.settings
        delay = min(s.max_delay_s, s.base_delay_s * 2 ** (row["attempts"] - 1))
        (status,) = conn.execute(QUERIES["webhook_retry_later"], {
            "id": row["id"], "delay": delay, "horizon": s.retry_hours * 3600, "status_code": code,
            "error": error}).fetchone()
        self.on_result(row["event"], "retry" if status == "pending" else "failed")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()


def _netloc(address: str, port: int | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" if port else host
