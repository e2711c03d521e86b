"""Errors the runtime raises. Each carries a one-line message meant for a user."""


class GenError(Exception):
    """Base of every error gen reports to a user (CLI exit code 2)."""

    exit_code = 2


class InputError(GenError, ValueError):
    """Bad user input: a file, row or column that does not fit the bundle."""


class BundleError(GenError):
    """A bundle that is missing, corrupted, tampered with or too new; never half-loaded."""


class NotSupported(GenError):
    """A verb the bundle's model family does not offer."""


class DeviceError(GenError):
    """An execution device that was asked for and is not available."""


class MissingDependency(GenError):
    """An optional package the requested operation needs is not installed."""
