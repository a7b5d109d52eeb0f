"""What an archive may hold, the errors that refuse one, and member names made safe."""

from __future__ import annotations

import posixpath
import re
from typing import IO, Annotated

import msgspec

from iam_cluster.errors import IAMError

MiB = 1024 * 1024
#: Chunk read from a member at a time (a member is never read whole into memory).
READ_CHUNK = MiB
#: Members that are archive litter, not recordings (macOS resource forks, Finder and Windows files).
_LITTER = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$|\._)")
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Limits that make a hostile archive (zip bomb, millions of members) fail fast and cheaply.

    Sizes are uncompressed bytes, checked against what the archive declares before anything is
    decompressed and again while each member is read (a member that grows past its limit stops).
    """

    max_members: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    max_member_bytes: Annotated[int, msgspec.Meta(ge=1)] = 512 * MiB
    max_total_bytes: Annotated[int, msgspec.Meta(ge=1)] = 50 * 1024 * MiB


class ArchiveError(IAMError):
    """The archive cannot be used."""

    code = "bad_archive"


class UnsafeMember(ArchiveError):
    """A member's name would write outside the output folder (zip-slip)."""

    code = "unsafe_member"


class ArchiveTooLarge(ArchiveError):
    """The archive is over a limit (members, bytes of one member, or bytes in all)."""

    code = "archive_too_large"


class MemberTooLarge(ArchiveError):
    """One member is larger than allowed; only that member fails."""

    code = "member_too_large"


def safe_name(name: str) -> str:
    """A member's name as a clean relative POSIX path.

    Raises:
        UnsafeMember: absolute, with a drive letter, a ``..`` segment or a NUL: it could escape.
    """
    raw = name.replace("\\", "/")
    if "\0" in raw or raw.startswith("/") or _DRIVE.match(raw):
        raise UnsafeMember(f"archive member {name!r} has an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeMember(f"archive member {name!r} points outside the archive ('..')")
    if not parts:
        raise UnsafeMember(f"archive member {name!r} has an empty name")
    return posixpath.join(*parts)


def is_litter(name: str) -> bool:
    """Whether a member is an operating system's leftover (never a recording)."""
    return bool(_LITTER.search(name)) or posixpath.basename(name).startswith(".")


class Budget:
    """Counts members and declared bytes while an archive is listed; raises at the first excess."""

    def __init__(self, limits: ArchiveLimits, label: str) -> None:
        self.limits, self.label = limits, label
        self.members = self.total = 0

    def add(self, name: str, size: int) -> None:
        lim = self.limits
        self.members += 1
        self.total += max(0, size)
        if self.members > lim.max_members:
            raise ArchiveTooLarge(f"{self.label}: more than {lim.max_members} members (the limit)")
        if size > lim.max_member_bytes:
            raise ArchiveTooLarge(f"{self.label}: member {name!r} unpacks to {size} bytes, over the "
                                  f"{lim.max_member_bytes}-byte limit per member")
        if self.total > lim.max_total_bytes:
            raise ArchiveTooLarge(f"{self.label}: members unpack to more than {lim.max_total_bytes} bytes "
                                  "(the limit for a whole archive)")


def copy_limited(src: IO[bytes], dst: IO[bytes], limit: int, name: str) -> int:
    """Copies ``src`` into ``dst`` a chunk at a time; returns the bytes copied.

    Raises:
        MemberTooLarge: more than ``limit`` bytes came out (whatever the archive declared).
    """
    total = 0
    while chunk := src.read(READ_CHUNK):
        total += len(chunk)
        if total > limit:
            raise MemberTooLarge(f"{name}: unpacks to more than {limit} bytes")
        dst.write(chunk)
    return total
