"""Where a request log lives: a directory or a filesystem URL, through pyarrow's filesystems."""

from __future__ import annotations

import os
import pathlib
import uuid
from dataclasses import dataclass

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from modelscale.errors import InvalidInput
from modelscale.observe.schema import LOG_SCHEMA, PAYLOADS_DIR

__all__ = ["LogLocation"]


@dataclass(frozen=True)
class LogLocation:
    """A request log's root: the filesystem and the path in it."""

    filesystem: pafs.FileSystem
    root: str
    display: str
    """The path or URL as the user wrote it."""

    @classmethod
    def of(cls, where: str | os.PathLike[str], *, field: str = "log.path") -> LogLocation:
        """The location of ``where``: a local path, or a URL pyarrow (or fsspec) can open."""
        text = str(where)
        if "://" not in text:
            path = pathlib.Path(text).expanduser().absolute()
            return cls(pafs.LocalFileSystem(), path.as_posix(), str(path))
        try:
            fs, root = pafs.FileSystem.from_uri(text)
        except (OSError, ValueError) as first:
            try:  # schemes pyarrow does not know itself (memory://, ...), through fsspec
                import fsspec

                fsspec_fs, root = fsspec.core.url_to_fs(text)
                fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs))
            except Exception as exc:
                raise InvalidInput(
                    f"{field}: cannot open {text!r} as a filesystem ({first}; {exc}). Expected a "
                    "directory or a URL such as s3://bucket/prefix.",
                    field=field,
                ) from None
        return cls(fs, root.rstrip("/"), text)

    def check_writable(self, *, field: str = "log.path") -> None:
        """Create the root and write and remove a probe file; InvalidInput naming the problem."""
        probe = f"{self.root}/.probe-{uuid.uuid4().hex}"
        try:
            self.filesystem.create_dir(self.root, recursive=True)
            with self.filesystem.open_output_stream(probe) as out:
                out.write(b"")
            self.filesystem.delete_file(probe)
        except (OSError, ValueError) as exc:
            raise InvalidInput(
                f"{field}: cannot write the request log to {self.display} ({exc}). Point "
                "log.path (or MODELSCALE_LOG_DIR) at a writable directory, or set "
                "log.enabled: false.",
                field=field,
            ) from None

    def files(self) -> list[str]:
        """Every complete log file under the root (temporary names left out), sorted."""
        try:
            info = self.filesystem.get_file_info(pafs.FileSelector(self.root, recursive=True))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise InvalidInput(
                f"cannot read the request log at {self.display}: {exc}", field="log"
            ) from None
        out = [
            i.path
            for i in info
            if i.type == pafs.FileType.File
            and i.base_name.endswith(".parquet")
            and not i.base_name.startswith(".")
            and f"/{PAYLOADS_DIR}/" not in i.path
        ]
        return sorted(out)

    def dataset(self, files: list[str] | None = None) -> ds.Dataset:
        """The log as one Arrow dataset (DuckDB scans it lazily, reading only what a query needs)."""
        return ds.dataset(
            self.files() if files is None else files,
            schema=LOG_SCHEMA,
            format="parquet",
            filesystem=self.filesystem,
        )
