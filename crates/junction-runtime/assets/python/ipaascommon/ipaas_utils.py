"""Small utilities for steps (spec 004)."""

_TRUE = frozenset(("true", "t", "yes", "y", "on", "1"))
_FALSE = frozenset(("false", "f", "no", "n", "off", "0", "", "none", "null"))


def str_to_bool(value):
    """Read a parameter value as a boolean.

    Parameter values arrive either as JSON booleans or as strings typed in an application
    (``"True"``, ``"false"``, ``"yes"``...), so both are accepted, case-insensitively.
    ``None`` is False. Anything else raises ValueError rather than guessing.
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError("cannot read {!r} as a boolean".format(value))
