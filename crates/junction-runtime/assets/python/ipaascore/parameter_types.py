"""Parameter types for ``new_step_parameter(..., param_type=...)``.

Spec 004 shows only ``parameter_types.BoolParameterToggle()``. A type is a hint for user
interfaces: Junction reports its ``name`` when it introspects a step and does not convert or
validate values by type (steps convert themselves, e.g. with ``ipaas_utils.str_to_bool``).
"""


class ParameterType:
    """Base of all parameter types. ``name`` is what introspection reports as the type."""

    name = "string"

    def __init__(self, *args, **kwargs):
        # Keep whatever options a step passes (choices, placeholders...) so that steps written
        # for richer SDK versions still construct their types without error.
        self.args = args
        self.options = kwargs

    def __repr__(self):
        return "{}()".format(type(self).__name__)


class StringParameter(ParameterType):
    name = "string"


class IntParameter(ParameterType):
    name = "int"


class FloatParameter(ParameterType):
    name = "float"


class BoolParameterToggle(ParameterType):
    name = "bool"


class ListParameter(ParameterType):
    name = "list"


class DictParameter(ParameterType):
    name = "dict"
