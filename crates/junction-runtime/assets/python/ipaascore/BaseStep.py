"""``ipaascore.BaseStep.BaseStep``: the base class of every Python step (spec 004, chapter 5).

A step subclasses BaseStep (directly or through another step), declares its parameters in
``__init__`` with ``new_step_parameter`` and does its work in ``execute``. The Junction harness
creates one instance per execution, after binding the execution's input (parameters, application
variables, configuration, previous steps' data) with ``BaseStep._ipaas_bind``.

Step authors' ``__init__`` methods usually do not call ``super().__init__()`` (the spec's examples
don't), so all of BaseStep's per-instance state is set up in ``__new__``.
"""

import logging

from ipaascore import _runtime
from ipaascommon.ipaas_exceptions import (
    DataNotAvailableException,
    MissingRequiredStepParameter,
    VariableSubstitutionException,
)

FLOW = _runtime.FLOW

#: Parameters every step has and no step may declare (spec 004, "Base Parameters").
RESERVED_PARAMETER_NAMES = ("name", "file", "output_to")

_STEP_FUNCTION_PREFIXES = ("stepfunc.", "step_func.")  # the spec uses both spellings
_APPVAR_PREFIXES = ("appvar.", "_appvar.")
_CONFIG_PREFIX = "config."

# Marks an argument that was not passed (None can be a real value).
_UNSET = object()


class StepParameter:
    """One parameter declared with ``new_step_parameter``."""

    __slots__ = ("name", "description", "sample_value", "default_value", "required", "param_type")

    def __init__(self, name, description, sample_value, default_value, required, param_type):
        self.name = name
        self.description = description
        self.sample_value = sample_value
        self.default_value = default_value
        self.required = bool(required)
        self.param_type = param_type

    @property
    def type_name(self):
        """The parameter type's ``name`` ("string", "bool"...); "string" when none was given."""
        name = getattr(self.param_type, "name", None)
        return name if isinstance(name, str) and name else "string"


class StepContext:
    """What one execution tells its step: the ``input`` of an exec request."""

    def __init__(self, file, step_name=None, app_name=None, parameters=None,
                 app_variables=None, config=None, previous=None,
                 log_level=_runtime.DEFAULT_LOG_LEVEL):
        self.file = file                       # step (file/class) name, e.g. "QueryREST"
        self.step_name = step_name or file     # the step's name in the application
        self.app_name = app_name
        self.parameters = dict(parameters or {})
        self.app_variables = dict(app_variables or {})
        self.config = dict(config or {})
        # [{"name": ..., "data": ...}] in application order: position 1 is previous[0].
        self.previous = [entry for entry in (previous or []) if isinstance(entry, dict)]
        self.log_level = log_level


class StepLogger(logging.Logger):
    """``self.logger``: a standard logger plus ``flow()`` (level FLOW = 25, between INFO and
    WARNING, the level the Integration Service UI shows for progress messages)."""

    def flow(self, msg, *args, **kwargs):
        if self.isEnabledFor(FLOW):
            self._log(FLOW, msg, args, **kwargs)


def _make_logger(name, level):
    # Not registered with logging.getLogger: one short-lived logger per step instance.
    logger = StepLogger(name, level)
    logger.propagate = False
    logger.addHandler(_runtime.handler)
    return logger


class BaseStep:
    """Base class of Integration Service steps."""

    friendly_name = None
    description = None
    version = None

    # Context given to instances created while the harness serves a request.
    _ipaas_pending_context = None

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        context = BaseStep._ipaas_pending_context or StepContext(file=cls.__name__)
        self._ipaas_context = context
        self._ipaas_parameters = {}  # name -> StepParameter, in declaration order
        self._ipaas_saved_data = None
        self.logger = _make_logger(cls.__name__, context.log_level)
        return self

    def __init__(self, *args, **kwargs):
        # Nothing to do: state lives in __new__ so that steps that never call
        # super().__init__() work, and those that call it late don't lose parameters.
        pass

    @classmethod
    def _ipaas_bind(cls, context):
        """Harness hook: instances created from now on see ``context`` (None to unbind)."""
        BaseStep._ipaas_pending_context = context

    # ------------------------------------------------------------------ parameters

    def new_step_parameter(self, name='', description='', sample_value='', default_value=None,
                           required=False, param_type=None):
        """Declare a parameter. Its ``name`` is the key of the step object in the application
        JSON. Declaring a name twice replaces the earlier declaration (a subclass refining its
        parent's parameter)."""
        if not isinstance(name, str) or not name:
            raise ValueError("a step parameter needs a non-empty string name, got {!r}".format(name))
        if name in RESERVED_PARAMETER_NAMES:
            raise ValueError(
                "'{}' is a base parameter of every step ({}) and cannot be redefined".format(
                    name, ", ".join(RESERVED_PARAMETER_NAMES)))
        self._ipaas_parameters[name] = StepParameter(
            name, description, sample_value, default_value, required, param_type)

    def get_parameter(self, param_name, lookup_data=None):
        """The value of a parameter, with ``${...}`` variables substituted.

        The value is the one given in the application; a missing or null one falls back to the
        declared ``default_value``. In strings, ``${config.x}`` is a configuration value,
        ``${appvar.x}`` an application variable, ``${stepfunc.fn a b}`` the result of this
        step's method ``fn("a", "b")``, and ``${key}`` a key of ``lookup_data`` or of a
        previous step's saved dictionary. A value that is exactly one ``${...}`` becomes the
        substituted object itself; otherwise the pieces are joined as text. Strings inside
        list and dict values are substituted too. An undeclared parameter that is not given
        is None.
        """
        context = self._ipaas_context
        if param_name == "name":
            return context.step_name
        if param_name == "file":
            return context.file
        value = context.parameters.get(param_name)
        if value is None:
            if param_name == "output_to":
                return []
            declared = self._ipaas_parameters.get(param_name)
            value = declared.default_value if declared is not None else None
        return self._ipaas_substitute(value, lookup_data)

    def validate_parameter_values(self):
        """Raise MissingRequiredStepParameter if a required parameter has neither a value (a
        missing key or null counts as no value) nor a default."""
        given = self._ipaas_context.parameters
        missing = [
            parameter.name for parameter in self._ipaas_parameters.values()
            if parameter.required and given.get(parameter.name) is None
            and parameter.default_value is None
        ]
        if missing:
            raise MissingRequiredStepParameter(
                "step '{}' ({}) is missing required parameter{}: {}".format(
                    self._ipaas_context.step_name, self._ipaas_context.file,
                    "s" if len(missing) > 1 else "", ", ".join(missing)),
                missing)

    # Spelling used once in the spec's prose ("validate_parameter_value function").
    def validate_parameter_value(self):
        return self.validate_parameter_values()

    def get_parameter_from_previous_step(self, parameter_name=_UNSET, step_name=_UNSET, *,
                                         param_name=_UNSET):
        """A parameter value of a previous step, as given in the application (unsubstituted).
        The spec calls the first argument both ``parameter_name`` (syntax) and ``param_name``
        (its description); either keyword works.

        Raises DataNotAvailableException when no previous step has that name or when the
        worker did not pass that step's parameters."""
        parameter_name = _argument("get_parameter_from_previous_step",
                                   ("parameter_name", parameter_name), ("param_name", param_name))
        step_name = _argument("get_parameter_from_previous_step", ("step_name", step_name))
        entry = self._ipaas_previous_entry(step_name)
        parameters = entry.get("parameters")
        if not isinstance(parameters, dict):
            raise DataNotAvailableException(
                "the parameters of previous step '{}' were not passed to this step".format(step_name))
        return parameters.get(parameter_name)

    # ------------------------------------------------------------------ variables

    def get_app_variable(self, name=_UNSET, *, variable_name=_UNSET):
        """The value of an application variable, or None if the application has none by that name.
        The spec calls the argument both ``name`` (chapter 5 syntax) and ``variable_name``
        (chapter 2 and the chapter 5 description); either keyword works."""
        name = _argument("get_app_variable", ("name", name), ("variable_name", variable_name))
        return self._ipaas_context.app_variables.get(name)

    def get_app_variables(self, name=None):
        """Spelling used in the spec's prose. With a name, as ``get_app_variable``; without,
        a copy of all application variables."""
        if name is None:
            return dict(self._ipaas_context.app_variables)
        return self.get_app_variable(name)

    def get_name(self):
        """The name of this step in the application (e.g. "GETgoogle.com")."""
        return self._ipaas_context.step_name

    # ------------------------------------------------------------------ data between steps

    def save_data_for_next_step(self, data_to_save):
        """Save what the steps listed in ``output_to`` will receive. A later call replaces an
        earlier one. Junction carries data as JSON: None, booleans, numbers, strings, lists,
        tuples and sets (both become lists) and dicts (keys become strings)."""
        self._ipaas_saved_data = data_to_save

    def get_current_saved_data(self):
        """What this step has saved so far (None if nothing), e.g. after a parent step's
        ``execute()`` in an extended step."""
        return self._ipaas_saved_data

    def get_available_previous_step_input_positions(self):
        """``[(step_name, position), ...]`` for the previous steps whose data reaches this one.
        Positions start at 1; position 0 is this step's own arguments."""
        return [(entry.get("name"), position)
                for position, entry in enumerate(self._ipaas_context.previous, start=1)]

    def get_data_from_step_by_name(self, step_name):
        """The data saved by the previous step of that name."""
        return self._ipaas_previous_entry(step_name).get("data")

    def get_data_from_step_by_order(self, pos=_UNSET, *, position=_UNSET):
        """The data saved by the previous step at ``pos`` (1 = first in application order);
        position 0 is this step's own arguments (its parameters as given in the application).
        The spec calls the argument both ``pos`` (chapter 5 syntax) and ``position`` (chapter 2
        and the chapter 5 description); either keyword works."""
        position = _argument("get_data_from_step_by_order", ("pos", pos), ("position", position))
        previous = self._ipaas_context.previous
        if isinstance(position, bool) or not isinstance(position, int):
            raise DataNotAvailableException(
                "step position must be an integer, got {!r}".format(position))
        if position == 0:
            return dict(self._ipaas_context.parameters)
        if not 1 <= position <= len(previous):
            raise DataNotAvailableException(
                "no previous step at position {} (available: {})".format(
                    position, "1-{}".format(len(previous)) if previous else "none"))
        return previous[position - 1].get("data")

    def join_previous_step_data(self, data_from=None, *, step_name=None):
        """Join the data of previous steps (all of them, or those named in ``data_from``) that
        saved something: lists are concatenated, dicts merged (later steps win on equal keys),
        other values of one type collected into a list. One step's data comes back as is;
        no data at all is None. Mixing types raises TypeError. Chapter 2 of the spec calls the
        argument ``step_name``, chapter 5 ``data_from``; either keyword works."""
        if data_from is not None and step_name is not None:
            raise TypeError("join_previous_step_data() got the steps twice, as data_from and step_name")
        if data_from is None:
            data_from = step_name
        if data_from is None:
            entries = self._ipaas_context.previous
        else:
            names = [data_from] if isinstance(data_from, str) else list(data_from)
            entries = [self._ipaas_previous_entry(name) for name in names]
        pieces = [(entry.get("name"), entry.get("data")) for entry in entries
                  if entry.get("data") is not None]
        if not pieces:
            return None
        if len(pieces) == 1:
            return pieces[0][1]
        kinds = {_join_kind(data) for _, data in pieces}
        if len(kinds) > 1:
            raise TypeError("cannot join data of different types from previous steps: {}".format(
                ", ".join("{} ({})".format(name, type(data).__name__) for name, data in pieces)))
        kind = kinds.pop()
        if kind == "list":
            joined = []
            for _, data in pieces:
                joined.extend(data)
            return joined
        if kind == "dict":
            joined = {}
            for _, data in pieces:
                joined.update(data)
            return joined
        return [data for _, data in pieces]

    # ------------------------------------------------------------------ internals

    def _ipaas_previous_entry(self, step_name):
        for entry in self._ipaas_context.previous:
            if entry.get("name") == step_name:
                return entry
        names = [entry.get("name") for entry in self._ipaas_context.previous]
        raise DataNotAvailableException("no data from a previous step named '{}' (available: {})".format(
            step_name, ", ".join(repr(name) for name in names) if names else "none"))

    def _ipaas_substitute(self, value, lookup_data):
        if isinstance(value, str):
            return self._ipaas_expand(value, lookup_data)
        # New containers, so that a caller changing the result never changes the input or a
        # declared default.
        if isinstance(value, list):
            return [self._ipaas_substitute(item, lookup_data) for item in value]
        if isinstance(value, dict):
            return {key: self._ipaas_substitute(item, lookup_data) for key, item in value.items()}
        return value

    def _ipaas_expand(self, text, lookup_data):
        """Substitute the ``${...}`` in one string."""
        if "${" not in text:
            return text
        parts = _scan(text)
        if len(parts) == 1 and parts[0][0]:
            return self._ipaas_resolve(parts[0][1], lookup_data)
        return "".join(
            _as_text(self._ipaas_resolve(body, lookup_data)) if is_variable else body
            for is_variable, body in parts)

    def _ipaas_resolve(self, body, lookup_data):
        """The value of one ``${body}``."""
        expression = body.strip()
        for prefix in _STEP_FUNCTION_PREFIXES:
            if expression.startswith(prefix):
                return self._ipaas_call_step_function(body, expression[len(prefix):], lookup_data)
        if "${" in expression:
            # A computed name, e.g. ${config.${appvar.site}_host}.
            expression = _as_text(self._ipaas_expand(expression, lookup_data)).strip()
        context = self._ipaas_context
        if expression.startswith(_CONFIG_PREFIX):
            key = expression[len(_CONFIG_PREFIX):]
            found, value = _lookup(context.config, key)
            if found:
                return value
            raise VariableSubstitutionException(
                "cannot substitute ${{{}}}: the configuration has no value '{}'".format(body, key))
        for prefix in _APPVAR_PREFIXES:
            if expression.startswith(prefix):
                key = expression[len(prefix):]
                found, value = _lookup(context.app_variables, key)
                if found:
                    return value
                raise VariableSubstitutionException(
                    "cannot substitute ${{{}}}: the application has no variable '{}'".format(body, key))
        found, value = _lookup(lookup_data, expression)
        if found:
            return value
        for entry in context.previous:
            found, value = _lookup(entry.get("data"), expression)
            if found:
                return value
        raise VariableSubstitutionException(
            "cannot substitute ${{{}}}: no key '{}' in the lookup data or in the data of "
            "previous steps".format(body, expression))

    def _ipaas_call_step_function(self, body, call, lookup_data):
        words = _split_words(call)
        if not words:
            raise VariableSubstitutionException(
                "cannot substitute ${{{}}}: no function name".format(body))
        name, raw_args = words[0], words[1:]
        function = getattr(self, name, None) if not name.startswith("__") else None
        if not callable(function):
            raise VariableSubstitutionException(
                "cannot substitute ${{{}}}: step {} has no method '{}'".format(
                    body, type(self).__name__, name))
        # Arguments are strings, except an argument that is exactly one ${...}, which passes
        # the substituted object.
        return function(*[self._ipaas_expand(arg, lookup_data) for arg in raw_args])


def _argument(function, *spellings):
    """The one argument given under one of its ``(keyword, value)`` spellings (the spec names
    some arguments differently in different chapters)."""
    given = [(keyword, value) for keyword, value in spellings if value is not _UNSET]
    if len(given) == 1:
        return given[0][1]
    if not given:
        raise TypeError("{}() missing required argument: '{}'".format(function, spellings[0][0]))
    raise TypeError("{}() got the same argument twice, as {}".format(
        function, " and ".join("'{}'".format(keyword) for keyword, _ in given)))


def _as_text(value):
    return value if isinstance(value, str) else str(value)


def _join_kind(data):
    if isinstance(data, list):
        return "list"
    if isinstance(data, dict):
        return "dict"
    return type(data)


def _lookup(container, path):
    """``(True, value)`` for ``path`` in a dict: the key itself, or else a dotted path through
    nested dicts (and list indexes); ``(False, None)`` when absent."""
    if not isinstance(container, dict):
        return False, None
    if path in container:
        return True, container[path]
    current = container
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


def _closing_brace(text, position):
    """Index of the ``}`` closing a ``${`` whose body starts at ``position``, or -1."""
    depth = 1
    while position < len(text):
        if text.startswith("${", position):
            depth += 1
            position += 2
            continue
        if text[position] == "}":
            depth -= 1
            if depth == 0:
                return position
        position += 1
    return -1


def _scan(text):
    """Split ``text`` into ``[(is_variable, piece)]``: literal text, and bodies of ``${...}``
    (which may nest). An unclosed ``${`` is literal text."""
    parts = []
    literal_start = search_from = 0
    while True:
        start = text.find("${", search_from)
        if start < 0:
            break
        end = _closing_brace(text, start + 2)
        if end < 0:
            break
        if start > literal_start:
            parts.append((False, text[literal_start:start]))
        parts.append((True, text[start + 2:end]))
        literal_start = search_from = end + 1
    if literal_start < len(text):
        parts.append((False, text[literal_start:]))
    return parts


def _split_words(text):
    """Split on whitespace outside nested ``${...}``."""
    words, current, depth, position = [], [], 0, 0
    while position < len(text):
        if text.startswith("${", position):
            depth += 1
            current.append("${")
            position += 2
            continue
        char = text[position]
        if char == "}" and depth:
            depth -= 1
        if char.isspace() and depth == 0:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
        position += 1
    if current:
        words.append("".join(current))
    return words
