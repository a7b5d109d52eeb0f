"""Client for a running Serve application: send files, get transcripts back (stdlib HTTP only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import msgspec

from iam_cluster.errors import IAMError, MediaError
from iam_cluster.observability import context
from iam_cluster.pipeline.types import TranscribeOptions, Transcript

DEFAULT_ADDRESS = "http://127.0.0.1:8000"


def transcribe_remote(path: str | Path, options: TranscribeOptions | None = None,
                      address: str = DEFAULT_ADDRESS, timeout: float = 3600.0) -> Transcript:
    """POST one file to ``{address}/transcribe`` and return its Transcript.

    Raises:
        MediaError: the cluster could not use the media (its code comes back from the server).
        IAMError: any other failure, with the server's code and message.
    """
    path = Path(path)
    query = urllib.parse.urlencode({
        "filename": str(path),
        "options": msgspec.json.encode(options or TranscribeOptions()).decode(),
    })
    request = urllib.request.Request(
        f"{address.rstrip('/')}/transcribe?{query}", data=path.read_bytes(), method="POST",
        headers={"Content-Type": "application/octet-stream", **context.headers()},  # the job's ids
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return msgspec.json.decode(response.read(), type=Transcript)
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
        except (ValueError, KeyError):
            raise IAMError(f"{path}: HTTP {exc.code} from {address}") from exc
        if exc.code == 422:
            raise MediaError(str(path), error["message"].removeprefix(f"{path}: "), error["code"]) from exc
        raise IAMError(f"{path}: {error['message']} [{error['code']}]") from exc
    except urllib.error.URLError as exc:
        raise IAMError(f"cannot reach the cluster at {address}: {exc.reason}") from exc
