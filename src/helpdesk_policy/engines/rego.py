"""The ``rego`` engine: the Rego policies evaluated in-process by regopy (rego-cpp).

The policies are compiled once into a regopy ``Bundle``; each thread gets its
own ``Interpreter`` over that bundle, because one interpreter shared between
threads corrupts results, while the C call releases the GIL so
threads do evaluate in parallel.

rego-cpp fails open if you let it: an unknown builtin, a type error or a rule
reading a missing field yields *undefined*. So strict builtin errors are on,
an error output raises :class:`~helpdesk_policy.errors.EngineError`, and an
undefined decision raises :class:`~helpdesk_policy.errors.UndefinedDecisionError`.
The input is validated before evaluation and always carries every field.

The Python around rego-cpp's evaluation is kept to what each decision needs:

* The input document goes straight into rego-cpp's input builder, through the
  C functions of the library regopy loads: one call per value, per key and per
  object item (about 130 for a request), with none of regopy's per-call wrapping.
  These are exactly the calls ``regopy.Input(document)`` makes, so rego-cpp
  reads the same document. The one-call alternative, handing rego-cpp the
  request as JSON text (``Interpreter.set_input_term``), measured twice as
  slow (rego-cpp runs its whole Rego parser over the text), and it reads a
  string holding ``"``, ``\\`` or a control character differently. A
  document holding anything but JSON types goes through ``regopy.Input``.
* The output is read once, as one JSON text, into a buffer each thread keeps,
  and parsed once (regopy's ``Output`` copies it out twice).
* The decision is not validated here: whoever asks the engine does it once,
  with :func:`~helpdesk_policy.engines.base.checked_verdict`, on the parsed
  document. That is the cheapest point that still sees everything the engine
  says: validating the JSON text in pydantic instead measured slower than
  ``json.loads`` and validating the dict.

Never use regopy's binary bundle format here: it loads faster than a compile
but corrupts ``sprintf("%v")`` output in regopy 1.5.2.
"""

from __future__ import annotations

import ctypes
import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import (
    EngineError,
    MalformedDecisionError,
    PolicyLoadError,
    UndefinedDecisionError,
)
from ..models import Request
from ..policyset import DECISION_PATH, PolicySet
from ..regocheck import captured_stdout, compile_error_message
from .base import BaseEngine, RawDecision
from .regopy_import import import_regopy

# Through import_regopy: imported plainly after aiohttp, rego-cpp leaks memory on every evaluation.
regopy = import_regopy()

__all__ = ["RegoEngine", "compile_bundle"]

log = logging.getLogger(__name__)


def _interpreter() -> regopy.Interpreter:
    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    return interp


def compile_bundle(policy_set: PolicySet, entrypoints: tuple[str, ...] = (DECISION_PATH,)) -> regopy.Bundle:
    """Compile the policy modules and config into a reusable regopy bundle.

    The sources are checked first (:meth:`PolicySet.check`): rego-cpp would
    accept recursive rules and then evaluate them without end.

    Raises:
        PolicyLoadError: the Rego is refused by the check or does not
            compile; the message names each file, line and column.
    """
    policy_set.check()
    interp = _interpreter()
    error: regopy.RegoError | None = None
    bundle = None
    # rego-cpp prints its compile errors to the C++ stdout, in the middle of
    # whatever the program writes there: keep them out, and use the exception.
    with captured_stdout() as printed:
        try:
            for name, source in policy_set.modules.items():
                interp.add_module(name, source)
            interp.add_data(policy_set.data())
            bundle = interp.build(None, list(entrypoints))
        except regopy.RegoError as exc:
            error = exc
    if error is not None or bundle is None or not bundle.ok():
        raise PolicyLoadError(
            compile_error_message(f"Rego policies in {policy_set.directory}", error, printed, policy_set.modules)
        ) from None
    _replay(printed)
    return bundle


def _replay(printed: list[str]) -> None:
    # What another thread wrote to stdout while the compile was captured.
    text = "".join(printed)
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


# ---------------------------------------------------------------- the C calls

#: rego-cpp's answer when an output buffer is too small for the output JSON.
_BUFFER_TOO_SMALL = 2
#: The output buffer each thread starts with (a stock decision is about 1 KB)
#: and the largest one it keeps: a larger output gets a buffer of its own.
_BUFFER_SIZE = 16 * 1024
_BUFFER_KEPT = 256 * 1024


class _CFunctions(NamedTuple):
    """The rego-cpp C functions one decision calls."""

    new_input: Callable[[], int | None]
    string: Callable[[int | None, bytes], int]
    integer: Callable[[int | None, int], int]
    real: Callable[[int | None, float], int]
    boolean: Callable[[int | None, bool], int]
    null: Callable[[int | None], int]
    object_item: Callable[[int | None], int]
    make_object: Callable[[int | None, int], int]
    make_array: Callable[[int | None, int], int]
    free_input: Callable[[int | None], None]
    set_input: Callable[[int, int | None], int]
    query: Callable[[int, int, bytes], int | None]
    output_ok: Callable[[int], bool]
    output_json_size: Callable[[int], int]
    output_json: Callable[[int, Any, int], int]
    free_output: Callable[[int], None]


def _bind_c_functions() -> _CFunctions | None:
    """Bind the C functions, on the library regopy loaded, or None when it cannot.

    Each function is a fresh ctypes pointer with its own signature (the ones
    regopy declares), so nothing regopy set up is changed. A regopy without
    this library object (another release) falls back to its public API.
    """
    try:
        from regopy import rego_shared

        lib = rego_shared.rego
        handle, buffer = ctypes.c_void_p, ctypes.POINTER(ctypes.c_char)
        status, size = ctypes.c_uint32, ctypes.c_uint32

        def bind(name: str, restype: Any, *argtypes: Any) -> Any:
            function = lib[name]  # item access: a new function pointer, not regopy's
            function.restype = restype
            function.argtypes = list(argtypes)
            return function

        return _CFunctions(
            new_input=bind("regoNewInput", handle),
            string=bind("regoInputString", status, handle, ctypes.c_char_p),
            integer=bind("regoInputInt", status, handle, ctypes.c_int64),
            real=bind("regoInputFloat", status, handle, ctypes.c_double),
            boolean=bind("regoInputBoolean", status, handle, ctypes.c_bool),
            null=bind("regoInputNull", status, handle),
            object_item=bind("regoInputObjectItem", status, handle),
            make_object=bind("regoInputObject", status, handle, size),
            make_array=bind("regoInputArray", status, handle, size),
            free_input=bind("regoFreeInput", None, handle),
            set_input=bind("regoSetInput", status, handle, handle),
            query=bind("regoBundleQueryEntrypoint", handle, handle, handle, ctypes.c_char_p),
            output_ok=bind("regoOutputOk", ctypes.c_bool, handle),
            output_json_size=bind("regoOutputJSONSize", size, handle),
            output_json=bind("regoOutputJSON", status, handle, buffer, size),
            free_output=bind("regoFreeOutput", None, handle),
        )
    except (ImportError, AttributeError) as exc:
        log.debug("rego-cpp's C functions are not reachable through this regopy (%s): using its Python API", exc)
        return None


_C = _bind_c_functions()


class _Unsupported(Exception):
    """A value the direct input builder does not handle (regopy.Input does)."""


def _input_pusher(c: _CFunctions) -> Callable[[int | None, Any], None]:
    """The function pushing one JSON value onto a rego-cpp input, depth first.

    It makes the calls ``regopy.Input`` makes for the same value, in the same
    order, for the types ``Request.to_input()`` holds: ``dict`` (with ``str``
    keys), ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.
    Anything else raises :class:`_Unsupported`, and regopy converts it.
    A call's status is not checked one by one: rego-cpp keeps the first error
    in the input, and setting an input in error fails.
    """
    string, integer, real, boolean, null = c.string, c.integer, c.real, c.boolean, c.null
    object_item, make_object, make_array = c.object_item, c.make_object, c.make_array

    def push(p: int | None, value: Any) -> None:
        kind = type(value)  # exact types: a subclass (an enum, a tuple) goes to regopy
        if kind is str:
            string(p, value.encode())  # UTF-8, strict: as regopy
        elif value is None:
            null(p)
        elif kind is bool:
            boolean(p, value)
        elif kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise _Unsupported
                string(p, key.encode())
                push(p, item)
                object_item(p)
            make_object(p, len(value))
        elif kind is list:
            for item in value:
                push(p, item)
            make_array(p, len(value))
        elif kind is int:
            integer(p, value)  # beyond int64: ctypes.ArgumentError, as in regopy
        elif kind is float:
            real(p, value)
        else:
            raise _Unsupported

    return push


_push = _input_pusher(_C) if _C is not None else None


class _Runner:
    """One thread's interpreter and output buffer."""

    __slots__ = ("interp", "impl", "buffer")

    def __init__(self) -> None:
        self.interp = _interpreter()
        self.impl: int = self.interp._impl
        self.buffer = ctypes.create_string_buffer(_BUFFER_SIZE)


class RegoEngine(BaseEngine):
    """Evaluate ``data.helpdesk.decision`` with regopy.

    >>> from helpdesk_policy.engines.rego import RegoEngine
    >>> from helpdesk_policy.policyset import PolicySet
    >>> RegoEngine(PolicySet.load()).name
    'rego'
    """

    name = "rego"

    def __init__(self, policy_set: PolicySet, *, entrypoint: str = DECISION_PATH) -> None:
        self.policy_set = policy_set
        self.entrypoint = entrypoint
        self._bundle = compile_bundle(policy_set, (entrypoint,))
        self._bundle_impl: int = self._bundle._impl
        self._entrypoint_c = entrypoint.encode("utf-8")
        self._local = threading.local()

    def _runner(self) -> _Runner:
        runner: _Runner | None = getattr(self._local, "runner", None)
        if runner is None:
            runner = self._local.runner = _Runner()
        return runner

    def evaluate(self, request: Request) -> RawDecision:
        return self.evaluate_input(request.to_input())

    def evaluate_input(self, document: dict[str, Any]) -> RawDecision:
        """Evaluate a raw input document (already validated by the caller)."""
        runner = self._runner()
        ok, raw, results = False, b"", []
        try:
            self._set_input(runner, document)
            ok, raw = self._query(runner)
            if ok:
                # regopy parses rego-cpp's JSON output while building the
                # Output object; some outputs are not JSON (rego-cpp prints
                # the two largest doubles as numbers Python cannot read back).
                text = raw.decode("utf-8")
                # As regopy reads it: "undefined", one result, or a list of them.
                parsed = {} if text == "undefined" else json.loads(text)
                results = [r.get("expressions", []) for r in (parsed if isinstance(parsed, list) else [parsed])]
        except regopy.RegoError as exc:
            raise EngineError(f"evaluation failed: {exc}", engine=self.name) from exc
        except ValueError as exc:
            # Only the parser's position goes in the message: the output may quote input.
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise MalformedDecisionError(f"output is not valid JSON{where}", engine=self.name) from None
        if not ok:
            # rego-cpp reports builtin/type errors as an error output, not an exception.
            raise EngineError(f"evaluation error: {raw.decode('utf-8')[:500]}", engine=self.name)
        if not results or not results[0]:
            raise UndefinedDecisionError(f"data.{self.entrypoint.replace('/', '.')} is undefined", engine=self.name)
        value = results[0][0]
        if not isinstance(value, dict):
            raise UndefinedDecisionError(f"decision is not an object: {type(value).__name__}", engine=self.name)
        return value

    # ---------------------------------------------------------------- internals

    def _set_input(self, runner: _Runner, document: Any) -> None:
        """Make ``document`` the thread's interpreter's input."""
        if _C is None or _push is None:
            runner.interp.set_input(document)
            return
        p = _C.new_input()
        try:
            try:
                _push(p, document)
            except _Unsupported:
                runner.interp.set_input(document)
                return
            status = _C.set_input(runner.impl, p)
            if status:
                raise regopy.RegoError(regopy.rego_shared.rego_get_error(runner.impl), status)
        finally:
            # rego-cpp copies the input it is given: the builder can go at once.
            _C.free_input(p)

    def _query(self, runner: _Runner) -> tuple[bool, bytes]:
        """Evaluate the entrypoint: whether the output is a result, and its JSON text (or error)."""
        if _C is None:
            output = runner.interp.query_bundle_entrypoint(self._bundle, self.entrypoint)
            return output.ok(), str(output).encode("utf-8")
        out = _C.query(runner.impl, self._bundle_impl, self._entrypoint_c)
        if not out:
            raise regopy.RegoError(regopy.rego_shared.rego_get_error(runner.impl))
        try:
            ok = bool(_C.output_ok(out))
            buffer = runner.buffer
            status = _C.output_json(out, buffer, len(buffer))
            if status == _BUFFER_TOO_SMALL:
                size = _C.output_json_size(out)
                buffer = ctypes.create_string_buffer(size)
                if size <= _BUFFER_KEPT:
                    runner.buffer = buffer
                status = _C.output_json(out, buffer, size)
            if status:
                raise EngineError(f"cannot read the output (rego-cpp status {status})", engine=self.name)
            return ok, buffer.value
        finally:
            _C.free_output(out)
