"""Errors the trainer reports to a user in one line (CLI exit code 2)."""


class TrainError(ValueError):
    """Bad training input: a config key, a data file, a label, a device."""

    exit_code = 2


class TrainWarning(UserWarning):
    """Something a user should know about a finished run (the CLI prints it as one line)."""
