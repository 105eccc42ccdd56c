"""Never a crash, never a traceback on screen: every handler of the app's classes reports its errors.

Textual sends an exception raised in a message handler, an action, a timer or a screen callback to the app's
(private) fatal-error path, which exits and prints the traceback. Instead, `guarded` wraps a handler so that
an exception becomes a notification plus an event-log line (`LlorchApp.report`), and `guard_handlers` applies
it to every handler of a class: `action_*`, `on_*`, `key_*`, `@on(...)` handlers and `_watch_*`/`watch_*`.
Callbacks handed to Textual outside a class (timers, `push_screen` callbacks) are wrapped with `guarded`.

Textual has no public hook for a failing handler, so `guard_handlers` uses two private details (`@on` marks
functions with `_textual_on`; the metaclass lists them in `_decorated_handlers`). They are pinned: textual
<9 in pyproject.toml, and tests/tui/test_guard_pins.py fails if either changes.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, TypeVar

from textual.actions import SkipAction

F = TypeVar("F", bound=Callable[..., Any])
_PREFIXES = ("action_", "on_", "key_", "watch_", "_watch_")
# Lifecycle handlers whose failure we want to see as a real error (the app cannot work without them).
_SKIP = frozenset({"on_unmount"})


def _report(owner: Any, exc: Exception, name: str) -> None:
    app = getattr(owner, "app", owner)
    report = getattr(app, "report", None)
    if report is None:
        raise exc  # not inside a llorch app (no log pane to report to): keep Textual's behaviour
    report(exc, name)


def guarded(fn: F, owner: Any = None) -> F:
    """`fn` with its exceptions reported instead of raised. `owner` (for plain callbacks) finds the app;
    for methods the first argument (self) does."""
    name = fn.__name__.removeprefix("action_").removeprefix("_")

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (SkipAction, asyncio.CancelledError):
                raise
            except Exception as exc:
                _report(owner if owner is not None else args[0], exc, name)
                return None
        # The ignores: a marker attribute on a function object, and functools.wraps keeps fn's signature.
        async_wrapper.__llorch_guarded__ = True  # type: ignore[attr-defined]
        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SkipAction:
            raise
        except Exception as exc:
            _report(owner if owner is not None else args[0], exc, name)
            return None
    wrapper.__llorch_guarded__ = True  # type: ignore[attr-defined]  # as above
    return wrapper  # type: ignore[return-value]


C = TypeVar("C", bound=type)


def guard_handlers(cls: C) -> C:
    """Class decorator: wrap every handler defined on `cls` itself (bases are decorated on their own)."""
    replaced: dict[Any, Any] = {}
    for attr, value in list(vars(cls).items()):
        if not inspect.isfunction(value) or getattr(value, "__llorch_guarded__", False) or attr in _SKIP:
            continue
        if attr.startswith(_PREFIXES) or hasattr(value, "_textual_on"):
            wrapped = guarded(value)
            setattr(cls, attr, wrapped)
            replaced[value] = wrapped
    # Textual's metaclass recorded the @on handlers when the class was created: point it at the wrappers.
    for entries in getattr(cls, "__dict__", {}).get("_decorated_handlers", {}).values():
        entries[:] = [(replaced.get(fn, fn), selectors) for fn, selectors in entries]
    return cls
