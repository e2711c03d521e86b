"""The `gen` console script. Signals are handled before anything heavy is imported: SIGINT
and SIGTERM become `Interrupted`, which unwinds through every writer's cleanup (its temp
file is removed; the target is never touched) and ends as one line on stderr with exit 130
(SIGINT) or 143 (SIGTERM), during start-up as much as mid-run."""

from __future__ import annotations

import signal
import sys


class Interrupted(BaseException):
    """A signal asked gen to stop (a BaseException: no `except Exception` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum, frame) -> None:
    raise Interrupted(signum)


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        from .main import main as run

        run()
    except Interrupted as exc:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal must not interrupt the exit
            signal.signal(signum, signal.SIG_IGN)
        outputs = sys.modules.get("gen.runtime.outputs")
        if outputs is not None:  # a temp made just before the signal, before its writer's cleanup
            outputs.remove_live_temps()
        from gen.runtime.errors import launched_by_gen

        if not launched_by_gen():  # a process of `gen train --nproc`: the launcher reports the run
            sys.stderr.write(f"error: interrupted ({exc}); no partial output is left\n")
        sys.exit(128 + exc.signum)
    finally:
        # The command has ended, its output written or removed and its line printed: a signal
        # during the interpreter's exit (atexit hooks such as torch's library finalizers; a
        # `gen train --nproc` launcher can get its group's SIGTERM there) must neither print a
        # traceback nor change the exit code.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
