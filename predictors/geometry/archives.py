"""Safe extraction of user-uploaded .zip archives.

Every member is checked before anything is written: no absolute paths, no ``..`` components, no links or
special files, no encryption, no duplicates, bounded member count, total size and compression ratio. While
extracting, a member that yields more bytes than its declared size is rejected as soon as it does.
"""

from __future__ import annotations

import lzma
import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from predictors.geometry.limits import ArchiveLimits

_DEFAULT_LIMITS = ArchiveLimits()
_CHUNK_BYTES = 1024**2
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
)


def extract_zip(path: str | Path, dest_dir: str | Path, limits: ArchiveLimits = _DEFAULT_LIMITS) -> Path:
    """Extract the .zip at ``path`` into ``dest_dir`` (created if missing, must be empty) and return it.

    Raises ValueError naming the offending member when the archive is corrupt, unsafe or over ``limits``.
    """
    path, dest = Path(path), Path(dest_dir)
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise ValueError(
            f"the .zip upload is {size} bytes; at most {limits.max_file_bytes} bytes are allowed"
        )
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"extraction folder {dest} is not empty")
    try:
        with zipfile.ZipFile(path) as archive:
            members = _checked_members(archive.infolist(), limits)
            for info, relative in members:
                _extract_member(archive, info, dest, relative)
    except _ZIP_ERRORS as error:
        raise ValueError(f"the .zip upload is corrupt or uses an unsupported feature: {error}") from error
    return dest


def _checked_members(
    infos: list[zipfile.ZipInfo], limits: ArchiveLimits
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Validate every member up front; return them with their safe relative paths."""
    if len(infos) > limits.max_members:
        raise ValueError(
            f"the .zip upload has {len(infos)} entries; at most {limits.max_members} are allowed"
        )
    checked: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    seen: set[PurePosixPath] = set()
    total = 0
    for info in infos:
        relative = _safe_relative_path(info.filename)
        _check_member_kind(info)
        if relative in seen:
            raise ValueError(f"the .zip upload holds {info.filename!r} more than once")
        seen.add(relative)
        ratio_ok = info.file_size <= limits.max_compression_ratio * max(info.compress_size, 1)
        if info.file_size >= limits.ratio_check_min_bytes and not ratio_ok:
            raise ValueError(
                f"{info.filename!r} in the .zip upload expands from {info.compress_size} to {info.file_size} "
                f"bytes, more than {limits.max_compression_ratio:g}x; this looks like a zip bomb"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ValueError(
                f"the .zip upload expands to more than {limits.max_total_bytes} bytes, which is the limit"
            )
        checked.append((info, relative))
    return checked


def _safe_relative_path(name: str) -> PurePosixPath:
    """The member name as a relative path that cannot leave the extraction folder."""
    cleaned = name.replace("\\", "/")
    relative = PurePosixPath(cleaned)
    if "\x00" in cleaned or cleaned.startswith("/") or _DRIVE_LETTER.match(cleaned) or relative.is_absolute():
        raise ValueError(f"the .zip upload holds an absolute path {name!r}; only relative paths are allowed")
    if ".." in relative.parts:
        raise ValueError(f"the .zip upload holds a path with '..' ({name!r}); it could escape its folder")
    if not relative.parts:
        raise ValueError(f"the .zip upload holds an entry with an empty name ({name!r})")
    return relative


def _check_member_kind(info: zipfile.ZipInfo) -> None:
    """Allow plain files and folders only; reject encrypted members, links and special files."""
    if info.flag_bits & 0x1:
        raise ValueError(f"{info.filename!r} in the .zip upload is encrypted; upload an unencrypted .zip")
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if stat.S_ISLNK(file_type):
        raise ValueError(f"{info.filename!r} in the .zip upload is a symbolic link; links are not allowed")
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ValueError(f"{info.filename!r} in the .zip upload is a special file; only files are allowed")


def _extract_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, relative: PurePosixPath
) -> None:
    target = dest.joinpath(*relative.parts)
    if not target.resolve().is_relative_to(dest.resolve()):
        raise ValueError(f"{info.filename!r} in the .zip upload would be written outside its folder")
    try:
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, open(target, "xb") as sink:
            remaining = info.file_size
            while chunk := source.read(min(_CHUNK_BYTES, remaining + 1)):
                remaining -= len(chunk)
                if remaining < 0:
                    raise ValueError(
                        f"{info.filename!r} in the .zip upload expands beyond its declared size "
                        f"of {info.file_size} bytes"
                    )
                sink.write(chunk)
    except OSError as error:
        raise ValueError(f"could not extract {info.filename!r} from the .zip upload: {error}") from error
