"""Errors a user can act on. Anything raised as one of these is shown as a plain message
(CLI, app, eval harness), never as a traceback."""


class AdafuseError(Exception):
    """Base class: the message names the problem and, where possible, the fix."""


class InputError(AdafuseError, ValueError):
    """Bad prompt or decoding settings."""


class ModelLoadError(AdafuseError, RuntimeError):
    """A model could not be found, converted or loaded."""
