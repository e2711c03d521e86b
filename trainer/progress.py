"""Progress of a training run, phase by phase, on stderr: a rich bar per phase on a terminal,
plain whole lines anywhere else (a log file, a pipe, CI: a redrawn bar there is cut to 80
columns and smeared with carriage returns), nothing with --quiet.

A run opens one `reporting(quiet)` around all its work; code deep inside it (a family's
pretraining, an AIS estimate of log Z) opens a `phase` (or `start`s one and `end`s it)
without being handed the display, and outside a run a phase shows nothing.

    with reporting(quiet=False):
        with phase("dbm: pretraining layer 1", total=20, unit="epochs") as p:
            for epoch in range(20):
                ...
                p.advance(info="recon 12.3")
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar

# Off a terminal a phase writes a line when it ends, and on the way at each tenth of its total
# if LINE_SECONDS have passed since its last line: a long phase shows it moves, a quick one
# takes one line.
LINE_STEPS = 10
LINE_SECONDS = 2.0


class Phase:
    """One phase's counter; `advance` or `update` it as the work gets done."""

    def __init__(self, description: str, total: int, unit: str):
        self.description, self.total, self.unit = description, max(int(total), 0), unit
        self.done, self.info = 0, ""

    def advance(self, n: int = 1, info: str | None = None) -> None:
        """n more units done; `info` (e.g. the epoch's losses) is shown beside the count."""
        self.update(self.done + n, info)

    def update(self, done: int, info: str | None = None) -> None:
        """`done` units done in all."""
        self.done = min(int(done), self.total) if self.total else int(done)
        if info is not None:
            self.info = info
        self._show()

    def _show(self) -> None:
        """Draw the new state (nothing here: no display)."""

    def end(self) -> None:
        """The phase is over: off a terminal, its last count is written if it was not yet."""


class _BarPhase(Phase):
    def __init__(self, bar, description: str, total: int, unit: str):
        super().__init__(description, total, unit)
        self.bar = bar
        self.task = bar.add_task(description, total=self.total, info="")

    def _show(self) -> None:
        self.bar.update(self.task, completed=self.done, info=self.info)


class _LinePhase(Phase):
    def __init__(self, stream, description: str, total: int, unit: str):
        super().__init__(description, total, unit)
        self.stream, self.start = stream, time.perf_counter()
        self.shown, self.written, self.last = 0, 0, self.start  # tenths seen; units and time of the last line

    def _show(self) -> None:
        step = self.done * LINE_STEPS // self.total if self.total else 0
        if step > self.shown:
            self.shown = step
            if time.perf_counter() - self.last >= LINE_SECONDS:
                self._write()

    def end(self) -> None:
        if self.done != self.written:  # stopped early, or between two tenths
            self._write()

    def _write(self) -> None:
        elapsed = int(time.perf_counter() - self.start)
        self.stream.write(f"{self.description}: {self.done}/{self.total} {self.unit}, "
                          f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
                          + (f", {self.info}" if self.info else "") + "\n")
        self.stream.flush()
        self.written, self.last = self.done, time.perf_counter()


def _info_column():
    """rich's column for a phase's info (the losses): on a narrow terminal it is cut with an
    ellipsis, so that the counts beside it keep their width."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Info(ProgressColumn):
        def render(self, task) -> Text:
            return Text(task.fields["info"], no_wrap=True, overflow="ellipsis")

    return Info()


class _Display:
    """Where a run's phases are shown: a rich Progress on a terminal, lines on a stream, or
    nothing."""

    def __init__(self, bar=None, stream=None):
        self.bar, self.stream = bar, stream

    def phase(self, description: str, total: int, unit: str) -> Phase:
        if self.bar is not None:
            return _BarPhase(self.bar, description, total, unit)
        if self.stream is not None:
            return _LinePhase(self.stream, description, total, unit)
        return Phase(description, total, unit)


_current: ContextVar[_Display | None] = ContextVar("gen_training_progress", default=None)


@contextlib.contextmanager
def reporting(quiet: bool = False) -> Iterator[None]:
    """Show the phases opened inside this block on stderr (see the module's docstring); a
    block inside another keeps the outer one's display."""
    if _current.get() is not None:
        yield
        return
    from gen.runtime.outputs import on_terminal

    if quiet:
        display = _Display()
    elif on_terminal(sys.stderr):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        fixed = dict(table_column=Column(no_wrap=True))
        display = _Display(bar=Progress(
            TextColumn("[bold]{task.description}", **fixed), BarColumn(bar_width=10, **fixed),
            MofNCompleteColumn(**fixed), TimeElapsedColumn(**fixed), _info_column(),
            console=Console(stderr=True), transient=False))
    else:
        display = _Display(stream=sys.stderr)
    token = _current.set(display)
    try:
        if display.bar is not None:
            with display.bar:
                yield
        else:
            yield
    finally:
        _current.reset(token)


def start(description: str, total: int, unit: str = "steps") -> Phase:
    """A counter of `total` units for one phase of the current run's work, shown by the
    enclosing `reporting` (invisible outside one); call its `end` when the phase is over."""
    return (_current.get() or _Display()).phase(description, total, unit)


@contextlib.contextmanager
def phase(description: str, total: int, unit: str = "steps") -> Iterator[Phase]:
    """`start` as a block: the phase ends with it (not when the block fails)."""
    shown = start(description, total, unit)
    yield shown
    shown.end()
