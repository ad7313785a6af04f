"""Errors a user can cause. Each carries one sentence: what went wrong, where, what to try."""


class TunedeckError(Exception):
    """A problem the user can fix; shown without a traceback (CLI: stderr, exit code; TUI: notify)."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ModelNotFound(TunedeckError):
    pass


class ConfigError(TunedeckError):
    pass


class DataError(TunedeckError):
    pass
