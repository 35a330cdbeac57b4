"""Junction's Python runtime process: runs spec-004 steps for the worker.

Run as ``python3 -u -B junction_harness.py`` with this directory on PYTHONPATH. Speaks runtime
protocol version 1 (docs/runtime-protocol.md): JSON requests one per line on fd 3, JSON events one
per line on fd 4. Fds 1 and 2 are plain log output for the worker (a raw ``os.write(1, ...)`` is a
log line, never a broken protocol), ``sys.stdout`` turns ``print()`` into log events, and fd 0
reads /dev/null.

A process serves one script: the module is loaded once (cached by sha256) and reused by later
requests, but every exec creates a new instance of the step class.
"""

import hashlib
import importlib.abc
import importlib.util
import io
import json
import linecache
import logging
import math
import os
import builtins
import platform
import signal
import sys
import threading
import traceback
import types

from ipaascore import _runtime
from ipaascore.BaseStep import BaseStep, StepContext

PROTOCOL_VERSION = 1
HARNESS_FILE = os.path.abspath(__file__)
# The worker parses events with a JSON parser that may limit nesting (serde_json: 128 levels).
MAX_DATA_DEPTH = 100
# The worker's JSON parser keeps integers exact only in this range; it would turn larger ones into
# floats and lose digits.
MIN_DATA_INT = -(2 ** 63)
MAX_DATA_INT = 2 ** 64 - 1
# A print() without a newline is sent once this much text has piled up.
MAX_PENDING_PRINT = 64 * 1024


# ---------------------------------------------------------------------------------------- output

class EventWriter:
    """Writes protocol events, one JSON object per line, to the protocol fd."""

    def __init__(self, fd):
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, event):
        text = json.dumps(event, ensure_ascii=False, allow_nan=False, default=_describe)
        # 'replace' turns lone surrogates (undecodable bytes smuggled into str) into '?', so
        # the line is always valid UTF-8.
        payload = (text + "\n").encode("utf-8", "replace")
        with self._lock:
            view = memoryview(payload)
            while view:
                try:
                    written = os.write(self._fd, view)
                except BrokenPipeError:
                    # The worker is gone: nobody to serve.
                    os._exit(0)
                view = view[written:]


class PrintStream(io.TextIOBase):
    """``sys.stdout`` during requests: each printed line becomes an INFO log event."""

    def __init__(self):
        super().__init__()
        self._pending = ""
        self._lock = threading.Lock()
        self.buffer = _PrintBuffer(self)

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        # fd 1 is a log pipe of the worker's: a subprocess handed sys.stdout writes there.
        return 1

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not {}".format(type(text).__name__))
        with self._lock:
            self._pending += text
            lines = self._pending.split("\n")
            self._pending = lines.pop()
            if len(self._pending) >= MAX_PENDING_PRINT:
                lines.append(self._pending)
                self._pending = ""
        for line in lines:
            _runtime.emit_log(logging.INFO, None, line)
        return len(text)

    def flush(self):
        # Partial lines wait for their newline (print(..., end="") then print()); the harness
        # sends what is left when the request ends.
        pass

    def send_pending(self):
        with self._lock:
            pending, self._pending = self._pending, ""
        if pending:
            _runtime.emit_log(logging.INFO, None, pending)


class _PrintBuffer(io.RawIOBase):
    """``sys.stdout.buffer``: bytes are decoded as UTF-8 and printed."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def writable(self):
        return True

    def write(self, data):
        self._stream.write(bytes(data).decode("utf-8", "replace"))
        return len(data)


def _describe(value):
    return "<{}>".format(type(value).__name__)


# ---------------------------------------------------------------------------------------- data

class SavedDataError(TypeError):
    """Saved data that JSON cannot carry."""


def _type_name(value):
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else "{}.{}".format(
        kind.__module__, kind.__qualname__)


def json_safe(value, strict=True):
    """A JSON-ready copy of ``value``: tuples and sets become lists (sets sorted when their
    items allow), dict keys that are numbers, booleans or None become strings as ``json.dumps``
    writes them. With ``strict``, anything else raises SavedDataError naming the type and where
    it is; without, it becomes its repr (introspection of declared sample/default values)."""
    return _json_safe(value, strict, None, 0, set())


def _format_path(path):
    # Paths are built as (parent, key) pairs and only turned into text for an error message.
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    return "data" + "".join("[{!r}]".format(key) for key in reversed(keys))


def _json_safe(value, strict, path, depth, active):
    def reject(problem):
        if strict:
            raise SavedDataError("saved data is not JSON-serializable: {} {}".format(
                _format_path(path), problem))
        return repr(value)

    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)  # a str subclass becomes a plain str
    if isinstance(value, int):
        if not MIN_DATA_INT <= value <= MAX_DATA_INT:
            return reject("is an integer of {} bits; the worker's JSON carries integers exactly "
                          "only from -2**63 to 2**64-1 (save it as a string)".format(value.bit_length()))
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return reject("is {!r}, which JSON cannot represent".format(value))
        return float(value)
    if not isinstance(value, (dict, list, tuple, set, frozenset)):
        return reject("is of type {}; save only None, booleans, numbers, strings, lists, "
                      "tuples, sets and dicts".format(_type_name(value)))
    if depth >= MAX_DATA_DEPTH:
        if strict:
            raise SavedDataError("saved data is not JSON-serializable: it is nested more than "
                                 "{} levels deep".format(MAX_DATA_DEPTH))
        return repr(value)
    if id(value) in active:
        return reject("contains itself")
    active.add(id(value))
    try:
        if isinstance(value, dict):
            result = {}
            for key, item in value.items():
                if isinstance(key, str):
                    text_key = str(key)
                elif key is None or isinstance(key, (bool, int, float)):
                    text_key = json.dumps(key)
                elif strict:
                    raise SavedDataError(
                        "saved data is not JSON-serializable: {} has a key of type {} ({!r})"
                        .format(_format_path(path), _type_name(key), key))
                else:
                    text_key = repr(key)
                result[text_key] = _json_safe(item, strict, (path, key), depth + 1, active)
            return result
        items = list(value)
        if isinstance(value, (set, frozenset)):
            try:
                items = sorted(items)
            except TypeError:
                pass  # unorderable items: keep iteration order
        return [_json_safe(item, strict, (path, index), depth + 1, active)
                for index, item in enumerate(items)]
    finally:
        active.discard(id(value))


# ---------------------------------------------------------------------------------------- loading

class RequestFailure(Exception):
    """A request that fails before or around the user's code, with what to report."""

    def __init__(self, kind, message, trace=None, line=None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.trace = trace
        self.line = line


def format_traceback(error):
    """The exception's formatted traceback, without the harness's own frames at the top."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == HARNESS_FILE:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb or error.__traceback__))


def error_message(error):
    return str(error) or type(error).__name__


class Library(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Modules that come with the script (`step.modules`: dotted name -> source), importable by it,
    e.g. a SyncPack's parent step `base_steps_syncpack.steps.QueryGQL`. Parent packages of those
    names exist implicitly."""

    def __init__(self):
        self.sources = {}

    def use(self, modules):
        if not isinstance(modules, dict):
            modules = {}
        modules = {str(k): v for k, v in modules.items() if isinstance(v, str)}
        if modules != self.sources:
            # Another set of library code: forget modules imported from the old one.
            for name in list(sys.modules):
                if self._covers(name, self.sources):
                    del sys.modules[name]
            self.sources = modules

    @staticmethod
    def _covers(fullname, sources):
        return fullname in sources or any(k.startswith(fullname + ".") for k in sources)

    def find_spec(self, fullname, path=None, target=None):
        if not self._covers(fullname, self.sources):
            return None
        is_package = any(k.startswith(fullname + ".") for k in self.sources)
        return importlib.util.spec_from_loader(fullname, self, is_package=is_package)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = self.sources.get(module.__name__)
        if source is None:
            return  # an implicit parent package
        filename = module.__name__.replace(".", "/") + ".py"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module.__file__ = filename
        exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)


LIBRARY = Library()
sys.meta_path.insert(0, LIBRARY)


class StepLoader:
    """Loads step sources as modules, once per (sha256, name)."""

    def __init__(self):
        self._modules = {}

    def load(self, name, source, sha256):
        key = (sha256 or hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(), name)
        module = self._modules.get(key)
        if module is not None:
            return module

        filename = name + ".py"
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except SyntaxError as error:  # also IndentationError, TabError
            raise RequestFailure(
                "SyntaxError",
                "syntax error: {} (line {})".format(error.msg, error.lineno)
                if error.lineno else "syntax error: {}".format(error.msg),
                line=error.lineno)
        except (ValueError, RecursionError, MemoryError) as error:
            # ValueError: NUL bytes; the others: a source nested too deeply to parse.
            raise RequestFailure("SyntaxError", "syntax error: {}".format(error_message(error)))

        # Tracebacks show the step's source lines. mtime None keeps linecache.checkcache from
        # dropping the entry, since no such file exists on disk.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module = types.ModuleType(name)
        module.__file__ = filename
        # Registered under the step name so that the step's classes are found by their module
        # (inspect, pickle, typing, a step importing another loaded step). Never replace a module
        # that isn't a step (a step named like a standard module).
        replaced = sys.modules.get(name)
        register = replaced is None or replaced in self._modules.values()
        if register:
            sys.modules[name] = module
        try:
            exec(code, module.__dict__)
        except BaseException as error:  # noqa: B902 -- user code may raise anything, even SystemExit
            if register:
                if replaced is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = replaced
            message = "loading step {} failed: {}".format(name, error_message(error))
            if isinstance(error, ModuleNotFoundError):
                message += (" (steps can import the Python standard library, ipaascore, "
                            "ipaascommon and the modules that come with the step)")
            raise RequestFailure(type(error).__name__, message, format_traceback(error))
        if register:
            # A new version of the step replaces the old one in sys.modules; forget the old.
            for old_key in [key for key in self._modules if key[1] == name]:
                del self._modules[old_key]
        self._modules[key] = module
        return module


def find_step_class(module, name):
    """The class named like the step; RequestFailure("IncompleteStep") when it is not usable."""
    candidate = module.__dict__.get(name)
    if not isinstance(candidate, type):
        raise RequestFailure("IncompleteStep", "incomplete step: no class named {}".format(name))
    if not issubclass(candidate, BaseStep):
        raise RequestFailure(
            "IncompleteStep",
            "incomplete step: class {} does not subclass ipaascore.BaseStep.BaseStep".format(name))
    if not callable(getattr(candidate, "execute", None)):
        raise RequestFailure(
            "IncompleteStep", "incomplete step: class {} has no execute method".format(name))
    return candidate


# ---------------------------------------------------------------------------------------- requests

class ProtocolError(RequestFailure):
    def __init__(self, message):
        super().__init__("ProtocolError", message)


def _require(container, key, kind, where):
    value = container.get(key)
    if not isinstance(value, kind):
        raise ProtocolError("{}.{} is missing or not {}".format(
            where, key, "an object" if kind is dict else "a string"))
    return value


def _optional(container, key, kind, where, default):
    value = container.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ProtocolError("{}.{} has the wrong type".format(where, key))
    return value


def _log_level(input_):
    value = input_.get("log_level")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(value)
    return _runtime.DEFAULT_LOG_LEVEL


def _step_name_hint(request):
    """The step name, if the request has one, for log lines written before it is validated."""
    step = request.get("step")
    name = step.get("name") if isinstance(step, dict) else None
    return name if isinstance(name, str) else None


class Harness:
    """Serves exec and introspect requests, one at a time."""

    def __init__(self, stdout):
        self.stdout = stdout
        self.loader = StepLoader()

    # Each handler returns the final event; the caller sends it after flushing prints.

    def handle(self, request):
        op = request.get("op")
        request_id = request.get("id")
        if op == "exec":
            return self.run_exec(request_id, request)
        if op == "introspect":
            return self.run_introspect(request_id, request)
        return self.failure_result(request_id, ProtocolError("unknown op {!r}".format(op)))

    def _step(self, request):
        """(name, source, sha256 or None) of the request's step."""
        step = _require(request, "step", dict, "request")
        sha256 = step.get("sha256")
        LIBRARY.use(step.get("modules"))
        return (_require(step, "name", str, "step"), _require(step, "source", str, "step"),
                sha256 if isinstance(sha256, str) and sha256 else None)

    def _enter_workdir(self, request):
        workdir = request.get("workdir")
        if workdir is None:
            return
        if not isinstance(workdir, str):
            raise ProtocolError("request.workdir is not a string")
        try:
            os.chdir(workdir)
        except OSError as error:
            raise RequestFailure(type(error).__name__, "cannot enter workdir {}: {}".format(
                workdir, error.strerror or error))

    def run_exec(self, request_id, request):
        input_ = request.get("input")
        input_ = input_ if isinstance(input_, dict) else {}
        log_level = _log_level(input_)
        self._begin(request_id, log_level, _step_name_hint(request))
        secrets = request.get("secrets")
        _runtime.set_secrets(secrets if isinstance(secrets, list) else ())
        try:
            name, source, sha256 = self._step(request)
            context = StepContext(
                file=name,
                step_name=_optional(input_, "step_name", str, "input", None),
                app_name=_optional(input_, "app_name", str, "input", None),
                parameters=_optional(input_, "parameters", dict, "input", {}),
                app_variables=_optional(input_, "app_variables", dict, "input", {}),
                config=_optional(input_, "config", dict, "input", {}),
                previous=_optional(input_, "previous", list, "input", []),
                log_level=log_level,
            )
            self._enter_workdir(request)
            step_class = find_step_class(self.loader.load(name, source, sha256), name)
            BaseStep._ipaas_bind(context)
            try:
                step = step_class()
                step.validate_parameter_values()
                step.execute()
                saved = BaseStep.get_current_saved_data(step)
            finally:
                BaseStep._ipaas_bind(None)
            try:
                data = json_safe(saved)
            except SavedDataError as error:
                return self.failure_result(request_id, RequestFailure("TypeError", str(error)))
            result = {"t": "result", "id": request_id, "ok": True, "data": data}
            left = leftovers()
            if left:
                result["leftover"] = left
            return result
        except RequestFailure as failure:
            return self.failure_result(request_id, failure)
        except BaseException as error:  # noqa: B902 -- a step may raise anything, even SystemExit
            if isinstance(error, KeyboardInterrupt):
                raise
            return {"t": "result", "id": request_id, "ok": False, "kind": type(error).__name__,
                    "error": error_message(error), "traceback": format_traceback(error)}
        finally:
            self._end()

    def run_introspect(self, request_id, request):
        self._begin(request_id, _runtime.DEFAULT_LOG_LEVEL, _step_name_hint(request))
        try:
            name, source, sha256 = self._step(request)
            self._enter_workdir(request)
            step_class = find_step_class(self.loader.load(name, source, sha256), name)
            BaseStep._ipaas_bind(StepContext(file=name))
            try:
                step = step_class()
            except BaseException as error:  # noqa: B902
                if isinstance(error, KeyboardInterrupt):
                    raise
                raise RequestFailure(
                    type(error).__name__,
                    "creating {} failed: {}".format(name, error_message(error)),
                    format_traceback(error))
            finally:
                BaseStep._ipaas_bind(None)
            parameters = [{
                "name": parameter.name,
                "description": json_safe(parameter.description, strict=False),
                "sample_value": json_safe(parameter.sample_value, strict=False),
                "default_value": json_safe(parameter.default_value, strict=False),
                "required": parameter.required,
                "type": parameter.type_name,
            } for parameter in step._ipaas_parameters.values()]
            info = {
                "friendly_name": json_safe(getattr(step, "friendly_name", None), strict=False),
                "description": json_safe(getattr(step, "description", None), strict=False),
                "version": json_safe(getattr(step, "version", None), strict=False),
                "parameters": parameters,
            }
            return {"t": "introspection", "id": request_id, "ok": True, "info": info}
        except RequestFailure as failure:
            event = {"t": "introspection", "id": request_id, "ok": False, "error": failure.message}
            if failure.line is not None:
                event["line"] = failure.line
            if failure.trace:
                event["traceback"] = failure.trace
            return event
        finally:
            self._end()

    def failure_result(self, request_id, failure):
        event = {"t": "result", "id": request_id, "ok": False, "kind": failure.kind,
                 "error": failure.message}
        if failure.line is not None:
            event["line"] = failure.line
        if failure.trace:
            event["traceback"] = failure.trace
        return event

    def _begin(self, request_id, log_level, module):
        _runtime.begin_request(request_id, log_level, module)
        logging.getLogger().setLevel(log_level)
        # Undo what a previous request's code may have done to the standard streams.
        sys.stdout = self.stdout
        sys.stdin = io.StringIO("")

    def _end(self):
        self.stdout.send_pending()  # before the result: a request's output precedes its end
        _runtime.end_request()
        _runtime.set_secrets(())
        try:
            os.chdir("/")  # the worker removes the workdir
        except OSError:
            pass


# ---------------------------------------------------------------------------------------- main

def leftovers():
    """What the step left running that would run into the next request: threads, an interval
    timer, an alarm. The worker then ends this process instead of reusing it."""
    left = []
    # The kernel's list sees every thread (_thread's and a C library's too, which threading does
    # not list); the harness itself runs on one.
    try:
        threads = len(os.listdir("/proc/self/task")) - 1
    except OSError:
        threads = len(sys._current_frames()) - 1
    if threads > 0:
        left.append("{} thread(s)".format(threads))
    try:
        if signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
            left.append("an interval timer")
        remaining = signal.alarm(0)
        if remaining:
            left.append("an alarm")
    except (AttributeError, ValueError, OSError):
        pass
    return ", ".join(left) or None


def end_raw_output(request_id):
    """Marks the end of this request's raw output on fds 1 and 2 for the worker."""
    mark = "\0junction-end:{}\n".format(request_id).encode("utf-8", "replace")
    for fd in (1, 2):
        try:
            sys.stderr.flush() if fd == 2 else None
            os.write(fd, mark)
        except (OSError, ValueError):
            pass  # the step closed it; the worker waits briefly instead


_print = builtins.print


def masked_print(*args, **kwargs):
    """print() with the request's secrets masked in the values before they become text."""
    return _print(*[_runtime.mask(a) for a in args], **kwargs)


builtins.print = masked_print


def main():
    # fd 3: requests in; fd 4: events out (the worker's pipes). Neither is left open for a
    # subprocess.
    protocol_in, protocol_out = 3, 4
    os.set_inheritable(protocol_in, False)
    os.set_inheritable(protocol_out, False)
    writer = EventWriter(protocol_out)
    stdout = PrintStream()
    sys.stdout = stdout
    sys.stdin = io.StringIO("")
    _runtime.set_sink(writer.send)

    # Standard logging (a step's own logging.getLogger(...), libraries, warnings) also becomes
    # log events of the current request, at the request's log level.
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(_runtime.handler)
    logging.captureWarnings(True)

    harness = Harness(stdout)
    writer.send({"t": "ready", "v": PROTOCOL_VERSION, "runtime": "python",
                 "version": platform.python_version()})

    requests = io.open(protocol_in, "rb", closefd=False)
    for raw in requests:
        if not raw.strip():
            continue
        try:
            request = json.loads(raw)
        except ValueError as error:
            sys.stderr.write("junction harness: ignoring a request that is not JSON: {}\n".format(error))
            sys.stderr.flush()
            continue
        if not isinstance(request, dict):
            sys.stderr.write("junction harness: ignoring a request that is not an object\n")
            sys.stderr.flush()
            continue
        if request.get("op") == "shutdown":
            break
        request_id = request.get("id")
        try:
            version = request.get("v", PROTOCOL_VERSION)
            if version != PROTOCOL_VERSION:
                event = harness.failure_result(request_id, ProtocolError(
                    "unsupported protocol version {!r} (this harness speaks {})".format(
                        version, PROTOCOL_VERSION)))
            else:
                event = harness.handle(request)
            if request.get("op") == "exec":
                end_raw_output(request_id)
        except KeyboardInterrupt:
            break
        except BaseException as error:  # noqa: B902 -- the harness must outlive any request
            event = {"t": "introspection" if request.get("op") == "introspect" else "result",
                     "id": request_id, "ok": False, "kind": "HarnessError",
                     "error": "internal harness error: {}".format(error_message(error)),
                     "traceback": "".join(traceback.format_exception(
                         type(error), error, error.__traceback__))}
        writer.send(event)

    # os._exit: threads a step left running must not keep the process alive, and its atexit
    # handlers must not write anywhere.
    try:
        sys.stderr.flush()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
