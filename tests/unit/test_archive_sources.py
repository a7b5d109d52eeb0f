"""Archive inputs: listing, zip-slip, zip bombs, member limits, bad members, tar streaming, manifests."""

from __future__ import annotations

import io
import tarfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import msgspec
import pytest

from iam_cluster.archive.limits import (
    ArchiveLimits,
    ArchiveTooLarge,
    MemberTooLarge,
    UnsafeMember,
    safe_name,
)
from iam_cluster.archive.manifest import Manifest, Record
from iam_cluster.archive.outputs import Sink, output_stems
from iam_cluster.archive.sources import (
    ArchiveError,
    Item,
    list_items,
    open_source,
    read_items,
)
from iam_cluster.errors import MediaError
from iam_cluster.pipeline.decode import decode_audio

DATA = Path(__file__).parents[1] / "data"
GB = 1024**3


def _members() -> dict[str, bytes]:
    """Good clips (one nested two folders deep), a text file, an empty one and a truncated WAV."""
    good = (DATA / "spk1_snt1.wav").read_bytes()
    return {
        "a/spk1_snt1.wav": good,
        "a/b/c/spk2_snt1.wav": (DATA / "spk2_snt1.wav").read_bytes(),
        "jfk.flac": (DATA / "jfk.flac").read_bytes(),
        "notes.txt": b"these are not the recordings you are looking for\n",
        "empty.wav": b"",
        "cut.wav": good[: len(good) // 3][:2000],
        "__MACOSX/._jfk.flac": b"resource fork",
    }


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/", b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.wav")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    return path


def _outcomes(source) -> dict[str, str]:
    """Each item's outcome: "ok" when it decodes, else its error code."""
    out = {}
    items = list_items(source)
    for item, media in read_items(source, items):
        if isinstance(media, Exception):
            out[item.key] = media.code
            continue
        try:
            decode_audio(media, name=item.key)
            out[item.key] = "ok"
        except MediaError as exc:
            out[item.key] = exc.code
    return out


EXPECTED = {"a/spk1_snt1.wav": "ok", "a/b/c/spk2_snt1.wav": "ok", "jfk.flac": "ok", "notes.txt": "unsupported_media",
            "empty.wav": "empty_media", "cut.wav": "truncated_media"}


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar.gz"])
def test_archive_members_good_bad_and_nested(tmp_path, make):
    path = make(tmp_path / ("in.zip" if make is _zip else "in.tar.gz"), _members())
    source = open_source(str(path))
    assert source.kind == ("zip" if make is _zip else "tar")
    assert _outcomes(source) == EXPECTED  # litter and the symlink are never read


def test_folder_and_manifests(tmp_path):
    root = tmp_path / "in"
    for name, data in _members().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    assert _outcomes(open_source(str(root))) == EXPECTED
    (tmp_path / "list.jsonl").write_text('"in/jfk.flac"\n{"path": "in/notes.txt"}\n\n')
    assert _outcomes(open_source(str(tmp_path / "list.jsonl"))) == {"in/jfk.flac": "ok",
                                                                    "in/notes.txt": "unsupported_media"}
    (tmp_path / "list.csv").write_text("speaker,path\nx,in/a/spk1_snt1.wav\ny,in/missing.wav\n")
    assert _outcomes(open_source(str(tmp_path / "list.csv"))) == {"in/a/spk1_snt1.wav": "ok",
                                                                  "in/missing.wav": "unsupported_media"}


@pytest.mark.parametrize("name", ["../evil.wav", "a/../../evil.wav", "/etc/cron.d/evil", "C:\\evil.wav",
                                  "..\\..\\evil.wav"])
@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar.gz"])
def test_zip_slip_refuses_the_archive(tmp_path, make, name):
    path = make(tmp_path / ("in.zip" if make is _zip else "in.tar.gz"), {"ok.wav": b"RIFF", name: b"x"})
    with pytest.raises(UnsafeMember) as err:
        list_items(open_source(str(path)))
    assert err.value.code == "unsafe_member"


def test_safe_name_cleans_harmless_forms():
    assert safe_name("./a//b/./c.wav") == "a/b/c.wav"
    assert safe_name("a\\b.wav") == "a/b.wav"


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """1 GiB of zeros deflated to about 1 MB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    chunk = bytes(16 * 1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.wav", "w", force_zip64=True) as f:
        for _ in range(GB // len(chunk)):
            f.write(chunk)
    assert path.stat().st_size < 2 * 1024 * 1024
    return path


def test_zip_bomb_is_refused_before_decompressing(zip_bomb):
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ArchiveTooLarge, match="over the .*-byte limit per member"):
        list_items(open_source(str(zip_bomb)))
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 8 * 1024 * 1024


def test_member_growing_past_its_limit_stops_with_bounded_memory(zip_bomb):
    """Even when listing is bypassed (declared sizes can lie), unpacking stops at the limit."""
    limits = ArchiveLimits(max_member_bytes=32 * 1024 * 1024)
    source = msgspec.structs.replace(open_source(str(zip_bomb)), limits=limits)
    tracemalloc.start()
    t0 = time.perf_counter()
    [(_item, outcome)] = list(read_items(source, [Item("zeros.wav", "zeros.wav", 10, "lie")]))
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(outcome, MemberTooLarge) and outcome.code == "member_too_large"
    assert elapsed < 5.0 and peak < 24 * 1024 * 1024  # the spool spills to disk past 16 MB


def test_total_bytes_limit(tmp_path):
    path = _zip(tmp_path / "in.zip", {f"{i}.wav": bytes(1000) for i in range(5)})
    with pytest.raises(ArchiveTooLarge, match="more than 4000 bytes"):
        list_items(open_source(str(path), ArchiveLimits(max_total_bytes=4000)))


@pytest.mark.parametrize("suffix", ["zip", "tar"])
def test_twenty_thousand_members_refused_by_the_member_limit(tmp_path, suffix):
    path = tmp_path / f"many.{suffix}"
    if suffix == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for i in range(20_000):
                zf.writestr(f"c/{i}.wav", b"x")
    else:
        with tarfile.open(path, "w") as tf:
            for i in range(20_000):
                info = tarfile.TarInfo(f"c/{i}.wav")
                info.size = 1
                tf.addfile(info, io.BytesIO(b"x"))
    t0 = time.perf_counter()
    with pytest.raises(ArchiveTooLarge, match="more than 10000 members"):
        list_items(open_source(str(path)))
    assert time.perf_counter() - t0 < 5.0


def test_not_an_archive(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ArchiveError):
        open_source(str(tmp_path / "x.bin"))
    with pytest.raises(ArchiveError, match="no such file"):
        open_source(str(tmp_path / "nothing.zip"))


def test_tar_reads_a_subset_by_position(tmp_path):
    path = _tar(tmp_path / "in.tar.gz", _members())
    source = open_source(str(path))
    items = list_items(source)
    subset = [items[3], items[1]]
    got = [(item.key, media.read() if not isinstance(media, Exception) else media) for item, media in
           read_items(source, subset)]
    assert sorted(k for k, _ in got) == sorted(i.key for i in subset)
    assert all(data == _members()[k] for k, data in got)


def test_manifest_resumes_and_keeps_one_line_per_input(tmp_path):
    sink = Sink(str(tmp_path / "out"))
    m = Manifest(sink)
    a, b, c = (Item(k, k, 1, f"fp-{k}") for k in ("a", "b", "c"))
    m.append([Record("a", "fp-a", "ok"), Record("b", "fp-b", "failed", "internal", "boom")])
    m.append([Record("b", "fp-b", "failed", "empty_media", "empty")])
    with (tmp_path / "out" / "manifest.jsonl").open("ab") as f:
        f.write(b'{"key": "c", "finge')  # a line cut short by a kill
    m2 = Manifest(sink)
    assert m2.done(a) and m2.done(b) and not m2.done(c)
    assert not m2.done(Item("a", "a", 1, "changed"))
    m2.append([Record("c", "fp-c", "ok")])
    m2.close(["a", "b", "c"])
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert [msgspec.json.decode(x)["key"] for x in lines] == ["a", "b", "c"]


def test_output_stems_mirror_keys_and_avoid_collisions():
    stems = output_stems(["a/x.wav", "a/x.mp3", "b/y.flac", "manifest.wav"])
    assert stems == {"a/x.wav": "a/x.wav", "a/x.mp3": "a/x.mp3", "b/y.flac": "b/y", "manifest.wav": "manifest.wav"}


# --- S3 prefixes the batch API may read ----------------------------------------------------------

USER = "7b0c3f0e-1d2a-4c5b-9e8f-0a1b2c3d4e5f"
ALLOWED = ("s3://intake/{user_id}/", "s3://shared/calls")


@pytest.mark.parametrize(("uri", "expected"), [
    (f"s3://intake/{USER}/", f"s3://intake/{USER}/"),
    (f"s3://intake/{USER}/2024/june", f"s3://intake/{USER}/2024/june/"),
    ("s3://shared/calls/", "s3://shared/calls/"),
    ("s3://shared/calls/day1/", "s3://shared/calls/day1/"),
])
def test_prefixes_under_an_allowed_one_are_accepted(uri, expected):
    import uuid

    from iam_cluster.api.batches import allowed_s3_prefix

    assert allowed_s3_prefix(uri, ALLOWED, uuid.UUID(USER)) == expected


@pytest.mark.parametrize(("uri", "code"), [
    ("s3://intake/", "forbidden"),                               # above the caller's folder
    ("s3://intake/00000000-0000-0000-0000-000000000000/", "forbidden"),  # another user's folder
    (f"s3://intake/{USER}-x/", "forbidden"),                     # a sibling whose name starts alike
    ("s3://shared/calls-private/", "forbidden"),
    ("s3://shared/", "forbidden"),
    ("s3://other/calls/", "forbidden"),
    (f"s3://intake/{USER}/../x/", "invalid_source"),
    (f"s3://intake/{USER}//x/", "invalid_source"),
    ("https://intake/x/", "invalid_source"),
    ("/srv/recordings/", "invalid_source"),
])
def test_other_prefixes_are_refused(uri, code):
    import uuid

    from iam_cluster.api.batches import allowed_s3_prefix
    from iam_cluster.api.errors import APIError

    with pytest.raises(APIError) as exc:
        allowed_s3_prefix(uri, ALLOWED, uuid.UUID(USER))
    assert exc.value.code == code
    with pytest.raises(APIError) as exc:  # nothing configured: nothing is readable
        allowed_s3_prefix(f"s3://intake/{USER}/", (), uuid.UUID(USER))
    assert exc.value.code == "forbidden"


def test_cpu_asr_actors_get_the_nodes_cores_unless_told(tmp_path):
    """Ray's OMP_NUM_THREADS=1 would leave CTranslate2 one thread: the job sets the count itself."""
    from iam_cluster.archive.job import JobConfig, asr_threads
    from iam_cluster.pipeline.types import TranscribeOptions
    from iam_cluster.settings import ModelSettings

    def config(**kw):
        models = ModelSettings(cpu_threads=kw.pop("cpu_threads", 0))
        return JobConfig(source=open_source(str(tmp_path)), sink=Sink(str(tmp_path)), options=TranscribeOptions(),
                         models=models, **kw)

    assert asr_threads(config(), cluster_cpus=2, nodes=1) == 2
    assert asr_threads(config(workers=3), cluster_cpus=16, nodes=1) == 5
    assert asr_threads(config(workers=4), cluster_cpus=2, nodes=1) == 1
    assert asr_threads(config(cpus_per_worker=4), cluster_cpus=64, nodes=4) == 4
    assert asr_threads(config(cpu_threads=3), cluster_cpus=16, nodes=1) == 3  # --cpu-threads wins


def test_read_groups_hold_whole_packs_of_short_files():
    from iam_cluster.archive.job import PACK_WINDOWS, groups_of
    from iam_cluster.archive.sources import Source

    items = [Item(key=f"{i}.wav", ref=f"/in/{i}.wav", size=1, fingerprint="x") for i in range(2000)]
    folder = Source(kind="folder", location="/in")
    # one pack per group: no group ends in a half-empty pack (400 clips: not 4 groups of 100)
    assert [len(g) for g in groups_of(folder, items[:400], PACK_WINDOWS, 2)] == [64] * 6 + [16]
    assert [len(g) for g in groups_of(folder, items[:100], PACK_WINDOWS, 2)] == [64, 36]
    assert [len(g) for g in groups_of(folder, items[:10], 4, 2)] == [4, 4, 2]  # asked for: kept
    assert len(groups_of(Source(kind="tar", location="/in.tar"), items, 128, 2)) == 2


def test_object_store_below_rays_minimum_is_refused_with_a_clear_message(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("transcribe_archive", Path(__file__).parents[2] / "jobs" /
                                                  "transcribe_archive.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    with pytest.raises(SystemExit) as exit_:
        job.build_parser().parse_args(["in/", "--output", "out/", "--object-store-mb", "10"])
    assert exit_.value.code == 2
    assert "below Ray's smallest object store, 75 MiB" in capsys.readouterr().err
    assert job.build_parser().parse_args(["in/", "--output", "o/", "--object-store-mb", "128"]).object_store_mb == 128
