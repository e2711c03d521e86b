"""The one error hierarchy of gen. Every error a user can cause carries a one-line message
and an exit code; the CLI maps them to `error: <message>` and that code in one place.

    GenError                      exit 1: gen itself failed (an export check)
    +-- ExportError               an exported graph failed a check (onnx checker, parity)
    +-- UsageError                exit 2: something the user can fix
        +-- InputError            a file, row or column that does not fit
            +-- OutputError       an output that cannot be written (`--skip-bad` stops on it)
        +-- ConfigError           an option, its value, or an option that does not apply
        +-- BundleError           a bundle (or bundle folder) missing, corrupted, tampered, too old/new
        +-- NotSupported          a verb the bundle's family does not offer
        +-- DeviceError           an execution device asked for and not there
        +-- MissingDependency     an optional package the operation needs
"""


class GenError(Exception):
    """Base of every error gen reports to a user; exit code 1 (our failure) unless a
    subclass says 2 (the user's input)."""

    exit_code = 1


class ExportError(GenError):
    """An exported graph failed a check (ONNX validity, torch vs onnxruntime parity); nothing
    was written."""


class UsageError(GenError):
    """Bad usage or bad input: the user can fix it (exit code 2)."""

    exit_code = 2


class InputError(UsageError, ValueError):
    """Bad user input: a file, row or column that does not fit."""


class OutputError(InputError):
    """An output that cannot be written (a folder that cannot be made, no permission, a full
    disk): the user's to fix (exit 2), and not the input's fault, so `--skip-bad` stops on it."""


class ConfigError(UsageError, ValueError):
    """A training option: unknown, not applicable to the family, or outside its constraint."""


class BundleError(UsageError):
    """A bundle that is missing, corrupted, tampered with, too old or too new; never
    half-loaded. Also an output folder that is not one of gen's own bundles."""


class NotSupported(UsageError):
    """A verb the bundle's model family does not offer."""


class DeviceError(UsageError):
    """An execution device that was asked for and is not available."""


class MissingDependency(UsageError):
    """An optional package the requested operation needs is not installed."""


class GenWarning(UserWarning):
    """Something a user should know about a finished step (the CLI prints it as one line)."""


# The run id `gen train --nproc N` gives torchrun's agent starts with this. Its processes see it
# (TORCHELASTIC_RUN_ID) and leave the report of a run's failure (a killed process, a lost peer)
# to the launcher, which says it in one line.
LAUNCH_PREFIX = "gen-launch-"


def launched_by_gen() -> bool:
    """Whether this process is one that `gen train --nproc N` started."""
    import os

    return os.environ.get("TORCHELASTIC_RUN_ID", "").startswith(LAUNCH_PREFIX)
