"""Progress of long work: a tqdm bar on a terminal, else a line every ``interval_s`` in the job's log.

    with Progress(total=n, desc="simulate v3", unit="pair") as progress:
        for ...:
            ...
            progress.update()

Outside a terminal (a Snakemake job whose stderr goes to its log file) each line reads
``simulate v3: 40/150 pair (27%), 1m05s elapsed, ETA 2m58s`` -- one at the start, then at most one every
``interval_s`` seconds, and one at the end (``finished``; work that stops early, such as a converged
optimiser, may finish below its planned total), so a log shows that the job is alive and when it will end.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

DEFAULT_INTERVAL_S = 30.0


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts ``done`` of ``total`` units; shows a bar on a TTY, else writes timed lines to ``stream``.

    ``stream``: where to write (default ``sys.stderr`` at construction time, which a rule script has
    redirected to the job's log).  ``tty``: force bar (True) or lines (False); None asks the stream.
    ``clock``: seconds, monotonic (injectable for tests).
    """

    def __init__(self, total: int, desc: str, *, unit: str = "it", interval_s: float | None = None,
                 stream: TextIO | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.interval_s = float(DEFAULT_INTERVAL_S if interval_s is None else interval_s)
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.done = 0
        self._closed = False
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self._bar = None
        if tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)
        self._start = clock()
        self._last_line = self._start
        if self._bar is None:
            self._write(f"{desc}: 0/{self.total} {unit} started")

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def line(self) -> str:
        """The current progress line (done/total, percentage, elapsed time and ETA)."""
        elapsed = self.clock() - self._start
        done = min(self.done, self.total)
        pct = 100.0 * done / self.total if self.total else 100.0
        text = f"{self.desc}: {done}/{self.total} {self.unit} ({pct:.0f}%), {format_duration(elapsed)} elapsed"
        if self._closed:
            text += ", finished"
        elif 0 < done < self.total:
            text += f", ETA {format_duration(elapsed * (self.total - done) / done)}"
        return text

    def update(self, n: int = 1) -> None:
        """Record ``n`` more units done; write a line when ``interval_s`` has passed since the last."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        if now - self._last_line >= self.interval_s and self.done < self.total:
            self._last_line = now
            self._write(self.line())

    def close(self) -> None:
        """Finish: close the bar, or write the final line (once)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self._write(self.line())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
