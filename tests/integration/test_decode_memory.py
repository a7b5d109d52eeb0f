"""The worker's first stage keeps memory bounded by the audio's length (16-bit samples, parts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
#: The child's own peak (VmHWM of its address space): ``ru_maxrss`` survives ``exec`` and would
#: report the pytest process's peak when that is higher.
CHILD = """
import json, re, sys
from iam_cluster.pipeline.runner import Limits, prepare
from iam_cluster.pipeline.types import TranscribeOptions
from iam_cluster.pipeline.vad import SileroVad
prepared = prepare(sys.argv[1], TranscribeOptions(), SileroVad(), Limits(4 * 3600), 300.0)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"peak_mb": peak_kb / 1024,
                  "shards": len(prepared.shards), "duration": prepared.duration}))
"""


@pytest.mark.slow
def test_two_hours_of_speech_decode_within_300_mb_plus_2_mb_a_minute(data_dir, tmp_path):
    from iam_cluster.pipeline.decode import decode_audio

    clip = (decode_audio(data_dir / "dev00.wav").samples * 32767).astype(np.int16)  # meeting speech
    path = tmp_path / "two-hours.flac"
    minutes = 120
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(minutes * 60 // 30):
            f.write(clip)
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(result["duration"] - minutes * 60) < 1 and result["shards"] >= 20
    assert result["peak_mb"] <= 300 + 2 * minutes, result
