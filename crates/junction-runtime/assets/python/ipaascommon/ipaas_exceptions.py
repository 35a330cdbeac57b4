"""Exceptions a step can raise or catch (spec 004).

The harness reports any exception that escapes a step with ``kind`` set to the exception's class
name, so these names are what operators see in a failed run.
"""


class DataNotAvailableException(Exception):
    """Data asked of a previous step is not there: no step at that position or with that name
    reaches this one (spec 004, get_data_from_step_by_order)."""


class MissingRequiredStepParameter(Exception):
    """A parameter declared with ``required=True`` has no value and no default. Raised by
    ``validate_parameter_values()``; the step's ``execute()`` is then not called."""

    def __init__(self, message, missing=()):
        super().__init__(message)
        #: names of the missing parameters, in declaration order
        self.missing = list(missing)


class StepFailedException(Exception):
    """A step gives up on purpose. Raise it (or any other exception) from ``execute()`` to mark
    the step failed."""


class VariableSubstitutionException(Exception):
    """Junction addition (the spec names no exception for this): a ``${...}`` in a parameter
    value names a configuration value, application variable, previous-step key or step function
    that does not exist."""
