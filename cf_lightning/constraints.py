"""Ranges and choices declared on config fields, and the one function that checks them.

A field says what it accepts in its annotation, ``n_factors: Annotated[int, Gt(0)]``; ``check_fields``
walks a validated config (dataclass instances, nested) and raises ``ConfigError("model.n_factors: must
be > 0, got 0")`` for the first value that breaks its field's constraints. Besides the declared
constraints, every number is held to two rules no field needs to repeat: a float (alone or in a list)
must be finite unless the field is annotated ``NonFinite()``, and an int must fit in 64 bits (torch,
numpy and Lightning count in int64; ``epochs=2**63`` would overflow there).

Our own small validator rather than pydantic: the config objects stay the plain dataclasses Hydra's
ConfigStore types, and the import is cheap. ``python -X importtime`` on the shared 2-core machine (load
about 11, 2026-12-07): this module about 17 ms cumulative (with ``cf_lightning.errors``), against 160 to
260 ms for ``from pydantic import BaseModel, Field`` (pydantic 2.13), which also added about 450 ms of wall
time to a bare ``python -c`` there (docs/testing.md). This module imports neither torch nor Hydra.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from cf_lightning.errors import ConfigError

INT64_MAX = 2**63 - 1


def require(ok: bool, key: str, message: str) -> None:
    """A rule that joins several keys (a ``check_together`` hook); single-key rules are declared on fields."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


class Constraint:
    """One declared rule; ``problem`` says what is wrong with ``value`` (None when it is fine)."""

    def problem(self, value: Any) -> str | None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def accepts(self) -> str:
        """What the field accepts, as the error message says it: ``> 0``, ``in (0, 1)``."""
        raise NotImplementedError


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Gt(Constraint):
    bound: float

    def problem(self, value: Any) -> str | None:
        return None if value > self.bound else f"must be {self.accepts()}"

    def accepts(self) -> str:
        return f"> {self.bound}"


@dataclass(frozen=True)
class Ge(Constraint):
    bound: float

    def problem(self, value: Any) -> str | None:
        return None if value >= self.bound else f"must be {self.accepts()}"

    def accepts(self) -> str:
        return f">= {self.bound}"


@dataclass(frozen=True)
class Interval(Constraint):
    """``low < value < high`` by default; ``closed="left"``, ``"right"`` or ``"both"`` include the ends."""

    low: float
    high: float
    closed: str = "neither"

    def problem(self, value: Any) -> str | None:
        left = value >= self.low if self.closed in ("left", "both") else value > self.low
        right = value <= self.high if self.closed in ("right", "both") else value < self.high
        return None if left and right else f"must be {self.accepts()}"

    def accepts(self) -> str:
        opening = "[" if self.closed in ("left", "both") else "("
        closing = "]" if self.closed in ("right", "both") else ")"
        return f"in {opening}{self.low}, {self.high}{closing}"


@dataclass(frozen=True)
class OneOf(Constraint):
    choices: tuple

    def problem(self, value: Any) -> str | None:
        return None if value in self.choices else f"must be one of {self.choices}, got {value!r}"


@dataclass(frozen=True)
class LowHigh(Constraint):
    """A ``[low, high]`` pair with ``low < high``: rating ranges, ``y_range``, clips."""

    def problem(self, value: Any) -> str | None:
        pair = list(value)
        if len(pair) == 2 and pair[0] < pair[1]:
            return None
        return f"must be [low, high] with low < high, or null; got {pair}"


@dataclass(frozen=True)
class Sizes(Constraint):
    """A non-empty list of layer sizes, each > 0."""

    def problem(self, value: Any) -> str | None:
        sizes = list(value)
        return None if sizes and all(n > 0 for n in sizes) else f"must be a non-empty list of sizes > 0, got {sizes}"


@dataclass(frozen=True)
class NonEmpty(Constraint):
    what: str = "value"

    def problem(self, value: Any) -> str | None:
        return None if len(value) > 0 else f"must list at least one {self.what}"


@dataclass(frozen=True)
class Length(Constraint):
    """A list of exactly ``n`` values, named by ``shape`` in the message (``[start, middle, end]``)."""

    n: int
    shape: str

    def problem(self, value: Any) -> str | None:
        return None if len(value) == self.n else f"must be {self.shape}, got {list(value)}"


@dataclass(frozen=True)
class Each(Constraint):
    """Every value of a list meets ``inner`` (a range constraint)."""

    inner: Constraint

    def problem(self, value: Any) -> str | None:
        return next((self.inner.problem(v) for v in value if self.inner.problem(v) is not None), None)

    def accepts(self) -> str:
        return self.inner.accepts()


@dataclass(frozen=True)
class Odd(Constraint):
    def problem(self, value: Any) -> str | None:
        return None if value > 0 and value % 2 == 1 else f"must be odd and > 0, got {value}"


@dataclass(frozen=True)
class NonFinite:
    """Marks a float field where ``inf`` or ``nan`` means something (none does today)."""


def _message(constraint: Constraint, value: Any, optional: bool) -> str | None:
    problem = constraint.problem(value)
    if problem is None:
        return None
    if type(constraint).accepts is not Constraint.accepts:  # the range constraints: "must be > 0[ or null], got x"
        return f"{problem}{' or null' if optional else ''}, got {list(value) if isinstance(value, list) else value}"
    return problem


@functools.cache
def _field_rules(cls: type) -> tuple[tuple[str, tuple, bool, bool], ...]:
    """Per field of ``cls``: its name, declared constraints, whether null is allowed and non-finite floats are."""
    hints = typing.get_type_hints(cls, include_extras=True)
    rules = []
    for field in dataclasses.fields(cls):
        hint = hints.get(field.name, Any)
        metadata: tuple = ()
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extra = typing.get_args(hint)
            metadata = tuple(extra)
        optional = type(None) in typing.get_args(hint)
        constraints = tuple(m for m in metadata if isinstance(m, Constraint))
        rules.append((field.name, constraints, optional, any(isinstance(m, NonFinite) for m in metadata)))
    return tuple(rules)


def _number_problem(value: Any, non_finite_ok: bool) -> str | None:
    """The two rules every number follows: finite floats, ints within int64."""
    values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    for number in values:
        if not _number(number):
            continue
        if isinstance(number, float) and not math.isfinite(number) and not non_finite_ok:
            return f"must be a finite number, got {value}"
        if isinstance(number, int) and abs(number) > INT64_MAX:
            return f"must fit in 64 bits (at most {INT64_MAX}), got {value}"
    return None


def check_fields(config: Any, prefix: str = "") -> None:
    """Check every field of the dataclass instance ``config`` (and of those nested in it) against its
    declared constraints and the number rules, then its ``check_together`` hook (rules that join several
    keys); ``ConfigError`` naming ``prefix + key`` at the first problem."""
    if isinstance(config, Mapping):  # an untyped node holding typed ones (e.g. a masked copy of the root)
        for key, value in config.items():
            if dataclasses.is_dataclass(value):
                check_fields(value, f"{prefix}{key}.")
        return
    for name, constraints, optional, non_finite_ok in _field_rules(type(config)):
        value = getattr(config, name)
        key = f"{prefix}{name}"
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{key}.")
            continue
        problem = _number_problem(value, non_finite_ok)
        for constraint in constraints if problem is None else ():
            problem = _message(constraint, value, optional)
            if problem is not None:
                break
        if problem is not None:
            raise ConfigError(f"{key}: {problem}")
    together = getattr(config, "check_together", None)
    if together is not None:
        together()


# The shapes several configs share.
PositiveInt = Annotated[int, Gt(0)]
OptionalPair = Annotated[list[float] | None, LowHigh()]  # [low, high] with low < high, or null
