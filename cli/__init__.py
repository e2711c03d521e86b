"""gen.cli: the `gen` command line (Typer). `app` is imported on first use, so that the
console script (`gen.cli.entry`) can install its signal handling before typer loads."""


def __getattr__(name: str):
    if name == "app":
        from .main import app

        return app
    raise AttributeError(f"module 'gen.cli' has no attribute {name!r}")


__all__ = ["app"]
