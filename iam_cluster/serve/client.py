"""``ServeRunner``: the Runner of a running Serve application, over HTTP (stdlib only, no Ray).

Each file is POSTed to ``{address}/transcribe`` with its options and the caller's length limits;
the cluster streams progress lines back (NDJSON), so the caller's progress hook runs as windows
are decoded, and closing the connection (a hook that raises, e.g. a lost lease or a cancelled
job) cancels the request on the cluster.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from iam_cluster.errors import IAMError, MediaError, OptionsError
from iam_cluster.pipeline.runner import Limits
from iam_cluster.pipeline.types import Audio, ProgressHook, TranscribeOptions, Transcript, no_progress

#: Files in flight at once in ``run_many``: enough for the replicas to fill their batches.
CONCURRENCY = 8


class ServeRunner:
    """Runs transcriptions on the Serve application at ``address``.

    Args:
        address: ``http://host:port`` of the Serve HTTP proxy.
        limits: accepted recording lengths, enforced by the cluster for this caller.
        timeout: longest wait for one file, in seconds.
        concurrency: files in flight at once in ``run_many``.
    """

    def __init__(self, address: str, limits: Limits, timeout: float = 3600.0, concurrency: int = CONCURRENCY) -> None:
        self.address = address.rstrip("/")
        self.limits = limits
        self.timeout = timeout
        self.concurrency = concurrency

    def run(self, source: str | os.PathLike | bytes | Audio, options: TranscribeOptions,
            hook: ProgressHook = no_progress, name: str | None = None) -> Transcript:
        """Transcribe one file (a path or its bytes) on the cluster.

        Raises:
            MediaError / OptionsError: the cluster refused the media or the options.
            IAMError: the cluster could not be reached or failed otherwise.
        """
        if isinstance(source, Audio):
            raise TypeError("the Serve cluster takes files or their bytes, not decoded audio")
        label = name or ("<bytes>" if isinstance(source, bytes) else str(source))
        body = source if isinstance(source, bytes) else Path(source).read_bytes()
        query = {"filename": label, "options": msgspec.json.encode(options).decode(), "stream": "1",
                 "min_duration": str(self.limits.min_duration)}
        if self.limits.max_duration is not None:
            query["max_duration"] = str(self.limits.max_duration)
        request = urllib.request.Request(
            f"{self.address}/transcribe?{urllib.parse.urlencode(query)}", data=body, method="POST",
            headers={"Content-Type": "application/octet-stream", "Accept": "application/x-ndjson"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                for line in response:  # leaving the loop early closes the connection: the cluster cancels
                    event = json.loads(line)
                    if "progress" in event:
                        p = event["progress"]
                        hook(p["step"], p["completed"], p["total"])
                    elif "transcript" in event:
                        return msgspec.convert(event["transcript"], Transcript)
                    elif "error" in event:
                        raise error_from(event["error"], label)
        except urllib.error.HTTPError as exc:
            try:
                raise error_from(json.loads(exc.read())["error"], label) from exc
            except (ValueError, KeyError):
                raise IAMError(f"{label}: HTTP {exc.code} from {self.address}") from exc
        except urllib.error.URLError as exc:
            raise IAMError(f"cannot reach the cluster at {self.address}: {exc.reason}") from exc
        raise IAMError(f"{label}: the cluster closed the response without a result")

    def run_many(self, sources: Iterable[str | os.PathLike], options: TranscribeOptions,
                 hook: ProgressHook = no_progress) -> Iterator[tuple[Path, Transcript | IAMError]]:
        """Send several files at once, so that their windows share the replicas' batches."""
        paths = [Path(p) for p in sources]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [(p, pool.submit(self.run, p, options)) for p in paths]
            for done, (path, future) in enumerate(futures, 1):
                try:
                    result: Transcript | IAMError = future.result()
                except IAMError as exc:
                    result = exc
                except OSError as exc:
                    result = MediaError(str(path), f"could not be read: {exc.strerror or exc}")
                hook("files", done, len(paths))
                yield path, result


def error_from(error: dict, label: str) -> IAMError:
    """The error a cluster answer describes, with its code kept."""
    code, message = error.get("code", "internal"), error.get("message", "failed")
    if code in MediaError.CODES:
        return MediaError(label, message.removeprefix(f"{label}: "), code)
    if code == OptionsError.code:
        field, _, reason = message.partition(": ")
        return OptionsError(field, reason or message)
    failure = IAMError(f"{label}: {message} [{code}]")
    failure.code = code
    return failure
