"""What one setting accepts and how it is declared: its :class:`Rule`, :func:`setting`
(default, demo value, help, group) and how a value is shown. No torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError


class ConfigError(UserError):
    """A setting is invalid; the message says which and how to fix it."""


class _Unset:
    """The default of a setting a recipe or the demo decides; replaced when a Config is made."""

    def __repr__(self) -> str:
        return "<from the recipe or the demo>"


UNSET: Any = _Unset()


NO_DEMO = object()


@dataclass(frozen=True)
class Rule:
    """What one setting accepts: a type, and a range, a set of choices or a minimum length."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    open_lo: bool = False  # lo itself excluded
    open_hi: bool = False  # hi itself excluded
    also: tuple[Callable[[Any], bool], str] | None = None  # a further test, and how it reads

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind is float:
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            fits = isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool))
        if not fits:
            return False
        if self.choices is not None:
            return value in self.choices
        size = len(value) if self.kind is str else value
        above = self.lo is None or (size > self.lo if self.open_lo else size >= self.lo)
        below = self.hi is None or (size < self.hi if self.open_hi else size <= self.hi)
        return above and below and (self.also is None or self.also[0](value))

    def describe(self) -> str:
        what = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[self.kind]
        if self.choices is not None:
            what = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.kind is str and self.lo:
            what = "non-empty text"
        elif self.lo is not None and self.hi is not None and self.kind is float:
            what += f" in {'(' if self.open_lo else '['}{_num(self.lo)}, {_num(self.hi)}" \
                    f"{')' if self.open_hi else ']'}"
        elif self.lo is not None and self.hi is not None:
            what += f" in {_num(self.lo)}..{_num(self.hi)}"
        elif self.lo is not None:
            what += f" >= {_num(self.lo)}"
        what += f": {self.also[1]}" if self.also is not None else ""
        return what + (" (or null)" if self.nullable else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def setting(default: Any, kind: type, group: str, help: str, *, demo: Any = NO_DEMO,
            recipe: bool = False, shown: str | None = None, **rule: Any) -> Any:
    """One setting: its default (the seed design's, or for ``recipe`` settings the value of a
    recipe that does not set it), what the demo uses instead (``demo``), its :class:`Rule`, its
    ``--help`` group and text, and ``shown``: how --help states a default that is not a value."""
    later = recipe or demo is not NO_DEMO
    return field(default=UNSET if later else default, metadata={
        "rule": Rule(kind, **rule), "group": group, "help": help, "default": default,
        "demo": demo, "recipe": recipe, "shown": shown})


def path_setting(group: str, help: str, shown: str | None = None) -> Any:
    return setting(None, str, group, help, shown=shown, lo=1, nullable=True)


RATE = {"lo": 0, "hi": 1, "open_lo": True, "open_hi": True}


def flag(name: str) -> str:
    return name.replace("_", "-")


def shown_value(value: Any) -> str:
    """A setting's value as ``--help`` states it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def check_flag(option: str, value: Any, rule: Rule, note: str = "") -> None:
    """A command's own value (None: not given) against ``rule``, read as the settings' are."""
    if value is not None and not rule.ok(value):
        raise ConfigError(f"{option} {value!r}: must be {rule.describe()}{note}")


# A truncation psi: beyond 10 a normal is (numerically) never truncated.
TRUNCATION = Rule(float, lo=0, hi=10.0, open_lo=True)
