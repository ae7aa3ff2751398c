"""A small progress bar for long command-line work (no dependency).

    with Progress(total=6, desc="compiling") as bar:
        for cfg in configs:
            bar.update(note=cfg.label)          # after each item

On a terminal it redraws one line on stderr (`\\r`); elsewhere it prints
nothing unless `mode="always"` (then one line per update, for logs and tests).
`mode="never"` turns it off; the default "auto" follows stderr.isatty() and
the ATTNCC_PROGRESS environment variable (always / never / auto).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, Optional, TextIO, TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, total: int, desc: str = "", *, mode: Optional[str] = None,
                 stream: Optional[TextIO] = None, width: int = 24) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.width = width
        self.n = 0
        self.start = time.perf_counter()
        mode = mode or os.environ.get("ATTNCC_PROGRESS", "auto")
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = mode == "always" or (mode == "auto" and tty)
        self.redraw = tty and self.enabled
        self._last_len = 0

    def _line(self, note: str) -> str:
        frac = self.n / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        secs = time.perf_counter() - self.start
        text = f"{self.desc} [{bar}] {self.n}/{self.total} {secs:5.1f}s"
        return f"{text} {note}".rstrip()

    def update(self, n: int = 1, note: str = "") -> None:
        self.n = min(self.n + n, self.total) if self.total else self.n + n
        if not self.enabled:
            return
        line = self._line(note)
        if self.redraw:
            pad = " " * max(self._last_len - len(line), 0)
            self.stream.write("\r" + line + pad)
            self._last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.redraw and self._last_len:
            self.stream.write("\n")
            self.stream.flush()
            self._last_len = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], total: int, desc: str = "", *, mode: Optional[str] = None,
          note=str) -> Iterator[T]:
    """Yields the items, advancing a bar after each."""
    with Progress(total, desc, mode=mode) as bar:
        for item in items:
            yield item
            bar.update(note=note(item))
