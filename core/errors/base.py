"""The root of the error tree: every exception of Jobyard is a JobyardError (core/errors/__init__.py draws the tree)."""

from __future__ import annotations

from typing import Any, Protocol


class FieldProblem(Protocol):
    """A field error as the job types report one (core.engine.job_types.FieldError)."""

    def as_dict(self) -> dict[str, str]: ...


class JobyardError(Exception):
    """Something went wrong in Jobyard."""

    #: Stable snake_case code stored on the job and shown to API clients.
    code = "jobyard_error"

    def __init__(self, message: str | None = None, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        if code is not None:
            self.code = code
        #: What an API client is shown besides code and message: field errors, the state met, ...
        self.details = details

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""
