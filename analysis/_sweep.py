"""Resumable sweeps: every finished case is appended to a JSON-lines file as it completes.

A sweep is a list of cases (each identified by a JSON-able key) computed one by
one. With a store file, each finished case is written as one line
``{"fingerprint": ..., "key": ..., "record": ...}`` and flushed to disk
(``fsync``) before the next case starts, so an interrupted run (Ctrl-C, kill,
power loss) loses at most the case in progress; rerunning the same sweep reads
the finished cases back and computes only the rest. The fingerprint identifies
the sweep's inputs (data, weights, settings): records of other fingerprints in
the same file are kept but never reused.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from odenet.analysis._results import jsonable
from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = ["CaseStore", "atomic_write", "run_cases"]


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A reader sees either the old file or the complete new one, never a partial
    write, even if the process is killed mid-way.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from odenet.analysis._sweep import atomic_write
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = atomic_write(pathlib.Path(d) / "a.txt", "hello")
    ...     p.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        with open(tmp, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class CaseStore:
    """The finished cases of a sweep, read from and appended to a JSON-lines file.

    Parameters
    ----------
    path : str or path-like or None
        The JSON-lines file; ``None`` keeps the records in memory only.
    fingerprint : str
        Identifies the sweep's inputs; only records with this fingerprint are reused.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from odenet.analysis._sweep import CaseStore
    >>> with tempfile.TemporaryDirectory() as d:
    ...     s = CaseStore(pathlib.Path(d) / "cases.jsonl", "abc")
    ...     s.put(["rk4", 8], {"error": 1e-6})
    ...     CaseStore(pathlib.Path(d) / "cases.jsonl", "abc").get(["rk4", 8])
    {'error': 1e-06}
    """

    def __init__(self, path: str | os.PathLike | None, fingerprint: str):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ArgumentTypeError(
                f"store: expected a file path or None, got {type(path).__name__}"
            )
        self.path = None if path is None else Path(path)
        self.fingerprint = fingerprint
        self._done: dict[str, Any] = {}
        if self.path is None:
            return
        if self.path.exists() and self.path.is_dir():
            raise ArgumentError(f"store: {self.path} is a folder; expected a JSON-lines file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                raw = self.path.read_bytes()
                for line in raw.decode("utf-8", errors="replace").splitlines():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by an interrupt
                    if isinstance(rec, dict) and rec.get("fingerprint") == fingerprint:
                        self._done[self._k(rec.get("key"))] = rec.get("record")
                if raw and not raw.endswith(b"\n"):
                    with open(self.path, "ab") as fh:  # close a truncated last line
                        fh.write(b"\n")
            else:
                self.path.touch()
        except (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError) as err:
            raise ArgumentError(f"store: cannot write {self.path}: {err.strerror}") from None

    @staticmethod
    def _k(key: Any) -> str:
        return json.dumps(jsonable(key, strict=False), sort_keys=True)

    def __len__(self) -> int:
        return len(self._done)

    def get(self, key: Any) -> Any:
        """The record of a finished case, or ``None``."""
        return self._done.get(self._k(key))

    def __contains__(self, key: Any) -> bool:
        return self._k(key) in self._done

    def put(self, key: Any, record: Any) -> None:
        """Record a finished case (appended and flushed to disk at once)."""
        record = jsonable(record, strict=False)  # inf / nan round-trip as floats
        self._done[self._k(key)] = record
        if self.path is None:
            return
        line = json.dumps(
            {"fingerprint": self.fingerprint, "key": jsonable(key, strict=False),
             "record": record}
        )
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def run_cases(
    keys: Sequence[Any],
    compute: Callable[[Any], Any],
    store: CaseStore,
    *,
    progress: bool | None = None,
    desc: str = "cases",
) -> list[Any]:
    """Compute every case not yet in ``store`` (in order), recording each as it finishes.

    ``progress`` shows a tqdm bar on stderr (``None``: only on a terminal).
    Returns the records in the order of ``keys``.

    Examples
    --------
    >>> from odenet.analysis._sweep import CaseStore, run_cases
    >>> run_cases([1, 2, 3], lambda k: {"square": k * k}, CaseStore(None, "x"), progress=False)
    [{'square': 1}, {'square': 4}, {'square': 9}]
    """
    keys = list(keys)
    done = sum(1 for k in keys if k in store)
    bar = tqdm(
        total=len(keys),
        initial=done,
        desc=desc,
        disable=(not progress) if progress is not None else None,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )
    try:
        for key in keys:
            if key in store:
                continue
            bar.set_postfix_str(_describe(key), refresh=False)
            store.put(key, compute(key))
            bar.update(1)
    finally:
        bar.close()
    return [store.get(k) for k in keys]


def _describe(key: Any) -> str:
    if isinstance(key, Iterable) and not isinstance(key, (str, bytes)):
        return " ".join(str(k) for k in key)
    return str(key)
