"""The one error type the app's state raises for a refused request, shared by all its parts."""


class WorkbenchError(ValueError):
    """A request the workbench refuses; the message is meant for the user."""
