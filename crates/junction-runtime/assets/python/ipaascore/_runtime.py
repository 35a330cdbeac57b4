"""Junction plumbing shared by the harness and BaseStep; not part of the spec-004 API.

It knows which request is being served (its id, its log level, the step's class name) and turns
log calls into protocol ``log`` events through a sink the harness installs. Without a harness
(a step run by hand), or between requests, finished lines go to stderr instead.
"""

import datetime
import logging
import sys
import threading
import time

FLOW = 25
logging.addLevelName(FLOW, "FLOW")

# Protocol level names, highest first; a custom level takes the name of the next standard level
# at or below it (e.g. 35 -> WARNING, 5 -> DEBUG).
_LEVEL_NAMES = ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (FLOW, "FLOW"), (20, "INFO"))

DEFAULT_LOG_LEVEL = logging.INFO

_sink = None  # callable(event: dict) -> None, installed by the harness
_lock = threading.Lock()
_MASK = "********"
_secrets = ()  # the current request's secret values, longest first


def set_secrets(secrets):
    global _secrets
    _secrets = tuple(sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True))


def mask(value, _depth=0, _seen=None):
    """``value`` with every secret replaced in its strings (keys too), before it is formatted:
    ``repr`` would escape a secret holding quotes, backslashes or control characters into a form
    the worker's text-level redaction may not recognise. Containers are copied, other objects
    kept."""
    if not _secrets:
        return value
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, _MASK)
        return value
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
        masked = mask(text)
        return value if masked == text else masked.encode("utf-8")
    if _depth > 50 or not isinstance(value, (dict, list, tuple, set, frozenset)):
        if isinstance(value, BaseException) and _depth <= 50:
            return _masked_exception(value)
        return value
    _seen = _seen if _seen is not None else set()
    if id(value) in _seen:
        return value
    _seen.add(id(value))
    try:
        if isinstance(value, dict):
            return {mask(k, _depth + 1, _seen): mask(v, _depth + 1, _seen) for k, v in value.items()}
        items = [mask(v, _depth + 1, _seen) for v in value]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(items)
        if isinstance(value, (set, frozenset)):
            try:
                return type(value)(items) if type(value) in (set, frozenset) else set(items)
            except TypeError:
                return items
        return items if isinstance(value, list) or hasattr(value, "_fields") else type(value)(items)
    except Exception:
        return value
    finally:
        _seen.discard(id(value))


def _masked_exception(error):
    text = str(error)
    masked = mask(text)
    if masked == text:
        return error
    try:
        copy = type(error)(masked)
    except Exception:
        copy = Exception(masked)
    copy.__traceback__ = error.__traceback__
    return copy


class _Request:
    """The request being served. ``id`` is None between requests."""

    def __init__(self):
        self.id = None
        self.log_level = DEFAULT_LOG_LEVEL
        self.module = None


_request = _Request()


def set_sink(sink):
    global _sink
    _sink = sink


def begin_request(request_id, log_level, module):
    with _lock:
        _request.id = request_id
        _request.log_level = log_level
        _request.module = module


def end_request():
    with _lock:
        _request.id = None
        _request.log_level = DEFAULT_LOG_LEVEL
        _request.module = None


def current_module():
    return _request.module


def current_log_level():
    return _request.log_level


def level_name(levelno):
    for threshold, name in _LEVEL_NAMES:
        if levelno >= threshold:
            return name
    return "DEBUG"


def format_timestamp(created):
    """ISO-8601 UTC with milliseconds and ``Z``, e.g. ``2026-11-25T10:00:00.123Z``."""
    moment = datetime.datetime.fromtimestamp(created, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "{:03d}Z".format(moment.microsecond // 1000)


def format_line(levelno, module, message, created):
    # The separator is an en dash (U+2013), as in spec 000's log lines.
    return "[{}] [{}] \u2013 {}: {}".format(
        format_timestamp(created), level_name(levelno), module, message)


def emit_log(levelno, module, message, created=None):
    """Send one log line for the current request, unless it is below the request's log level."""
    with _lock:
        request_id, log_level = _request.id, _request.log_level
        module = module or _request.module or "step"
    if levelno < log_level:
        return
    if created is None:
        created = time.time()
    line = format_line(levelno, module, message, created)
    if _sink is None or request_id is None:
        # No request to attach the line to (a thread still logging after its request ended, or
        # no harness at all): stderr, which the worker records as ERROR lines.
        try:
            sys.__stderr__.write(line + "\n")
            sys.__stderr__.flush()
        except Exception:
            pass
        return
    _sink({"t": "log", "id": request_id, "level": level_name(levelno), "line": line})


class ProtocolLogHandler(logging.Handler):
    """logging handler behind every step logger and the root logger."""

    _formatter = logging.Formatter()

    def emit(self, record):
        try:
            if _secrets:
                # Mask the arguments before %-formatting turns them into text.
                record.msg = mask(record.msg)
                if isinstance(record.args, dict):
                    record.args = mask(record.args)
                elif record.args:
                    record.args = tuple(mask(a) for a in record.args)
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + self._formatter.formatException(record.exc_info)
            elif record.exc_text:
                message += "\n" + record.exc_text
            if record.stack_info:
                message += "\n" + record.stack_info
            emit_log(record.levelno, record.name, message, record.created)
        except Exception:
            self.handleError(record)


handler = ProtocolLogHandler()
