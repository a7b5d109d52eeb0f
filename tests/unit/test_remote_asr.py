"""What the engine's windows carry to the Serve ASR deployment (``serve.asr.RemoteASR``): a handle
that records the jobs stands in for Ray's, as only the jobs it is given are under test here (the
Serve path itself runs on real Ray in ``tests/integration/test_serve.py``)."""

import numpy as np

from iam_cluster.pipeline.types import TranscribeOptions, WindowText
from iam_cluster.serve.asr import RemoteASR


class _Done:
    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value


class _Handle:
    """Ray's deployment handle as ``RemoteASR`` uses it: ``decode_window.remote(job)``."""

    def __init__(self) -> None:
        self.jobs = []
        self.decode_window = self

    def remote(self, job):
        self.jobs.append(job)
        return _Done(WindowText(segments=[], avg_logprob=0.0, no_speech_prob=0.0, temperature=0.0))


def test_each_window_names_its_recording_uniquely_across_calls():
    """Only one recording's windows may share a CPU ``generate`` on the replica (``asr.cpu_parts``):
    windows of one file in one call share a source, another call's never does (two requests'
    file 0 are two recordings), a window packed from several files has none, and a call that names
    no sources is one recording."""
    handle = _Handle()
    asr = RemoteASR(handle)
    audio = [np.zeros(16000, dtype=np.float32)] * 4
    options = TranscribeOptions()
    asr.decode(audio, "en", options, sources=[0, 0, None, 1], tails=[True, True, False, True])
    asr.decode(audio[:2], "en", options, sources=[0, 0])
    asr.decode(audio[:2], "en", options)
    first, second, third = handle.jobs[:4], handle.jobs[4:6], handle.jobs[6:]
    assert first[0].source == first[1].source != first[3].source and first[2].source is None
    assert [j.continue_tail for j in first] == [True, True, False, True]
    assert second[0].source == second[1].source and second[0].source not in {j.source for j in first}
    assert third[0].source == third[1].source is not None and third[0].source != second[0].source
