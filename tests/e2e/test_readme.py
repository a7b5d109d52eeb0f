"""The README's client walk-through runs as written, against a live API and a real worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from iam_cluster.worker.loop import Worker

ROOT = Path(__file__).resolve().parents[2]


def blocks(kind: str) -> list[str]:
    """The README's code blocks marked ``<!-- walkthrough: KIND -->``."""
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"<!-- walkthrough: {kind} -->\n```\w+\n(.*?)```", text, re.S)


def test_the_readme_client_walkthrough_runs_as_written(live_api, api_settings, runner, tmp_path):
    (shell,), (python,) = blocks("sh"), blocks("python")
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # the README's paths are relative to a checkout
    env = {**os.environ, "API": live_api}
    stop = threading.Event()
    worker = threading.Thread(target=Worker(api_settings, runner=runner).run, args=(stop,))
    worker.start()
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", shell + '\necho "KEY=$KEY"'], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"job [0-9a-f-]+: completed", done.stdout), done.stdout
    srt = (tmp_path / "weekly-sync.srt").read_text()
    assert "[SPEAKER_00]" in srt and "[SPEAKER_01]" in srt
    assert all((tmp_path / f"weekly-sync.{f}").stat().st_size > 0 for f in ("json", "txt", "vtt", "rttm"))
    key = re.search(r"^KEY=(\S+)$", done.stdout, re.M).group(1)
    out = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env={**env, "KEY": key},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ask not what your country can do for you" in out.stdout
