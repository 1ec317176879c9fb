"""The search space: every ``SearchParameter`` as a finite list of values or a continuous range.

Kinds of parameter and the values they produce:

- ``values: [...]`` — the listed values, each keeping its type (``1`` stays an int, ``true`` a bool,
  ``"lpm"`` a string). The list order is the grid order.
- ``min``/``max`` with ``step`` — ``min, min + step, ...`` up to ``max`` (inclusive when it falls on the
  step). The values are ints when ``integer: true`` or when min, max and step are all whole numbers
  (``{min: 64, max: 512, step: 64}`` gives 64, 128, ... so an int-only engine flag gets ``64``, not
  ``64.0``); otherwise floats rounded to the decimals written in min and step, so 0.80 + 3 * 0.05 is
  0.95, not 0.9500000000000001.
- ``min``/``max`` with ``integer: true`` and no step — every integer in the range (``log: true``
  samples them on a log scale).
- ``min``/``max`` alone — a continuous range (``log: true`` for a log scale), the only infinite kind;
  samples are rounded to :data:`CONTINUOUS_SIGNIFICANT_DIGITS` significant digits so that flags and
  Experiment names stay readable.

Grid order: the product of the parameters in the order of the search space, the last parameter
varying fastest (like ``itertools.product``); each parameter's values in list order, ranges ascending.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeAlias, TypeGuard

from autotuner.core.crd.task import SearchParameter
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

Value: TypeAlias = bool | int | float | str
Params: TypeAlias = dict[str, Value]
Key: TypeAlias = tuple[int | float, ...]
"""A configuration's identity: per parameter, the index of its value (finite) or the value (continuous)."""

CONTINUOUS_SIGNIFICANT_DIGITS = 6
"""Significant digits kept for values drawn from a continuous range."""
MAX_DECIMALS = 10
"""Most decimals a stepped range's values are rounded to."""
_STEP_TOLERANCE = 1e-9
"""Relative slack when deciding whether ``max`` falls on the step (0.95 is on 0.80 + k * 0.05)."""


class SearchSpaceError(ValueError):
    """The search space, or a configuration checked against it, is not valid; the message says why."""


def _decimals(x: float) -> int:
    exponent = Decimal(repr(x)).normalize().as_tuple().exponent
    return min(max(0, -exponent), MAX_DECIMALS) if isinstance(exponent, int) else MAX_DECIMALS


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: Value) -> str:
    """bool, number or str: values only match values of the same kind (``True == 1`` in Python)."""
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "str"


class Dimension(ABC):
    """One parameter. Finite dimensions are indexed ``0 .. size - 1`` in grid order."""

    name: str

    @property
    @abstractmethod
    def size(self) -> int | None:
        """How many values; None for a continuous range."""

    def value_at(self, index: int) -> Value:
        raise NotImplementedError

    def index_of(self, value: Value) -> int | None:
        """The index of ``value``, or None when it is not one of this dimension's values."""
        raise NotImplementedError

    def key(self, value: Value) -> int | float:
        """The identity of an already canonical value (see :meth:`canonical`)."""
        index = self.index_of(value)
        assert index is not None
        return index

    def canonical(self, value: Value) -> Value:
        """``value`` as this dimension produces it (e.g. ``1`` read back from JSON for the float 1.0)."""
        index = self.index_of(value)
        if index is None:
            raise SearchSpaceError(f"parameter {self.name}: {value!r} is not in the search space")
        return self.value_at(index)

    def sample(self, rng: random.Random) -> Value:
        """A uniform draw (uniform in the logarithm for log-scale ranges)."""
        raise NotImplementedError

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution the Bayesian sampler draws this dimension from."""
        raise NotImplementedError

    def to_optuna(self, value: Value) -> Value:
        return self.key(value)

    def from_optuna(self, raw: object) -> Value:
        assert isinstance(raw, int)
        return self.value_at(raw)


@dataclass(frozen=True)
class Categorical(Dimension):
    name: str
    values: tuple[Value, ...]

    @property
    def size(self) -> int:
        return len(self.values)

    def value_at(self, index: int) -> Value:
        return self.values[index]

    def index_of(self, value: Value) -> int | None:
        for i, candidate in enumerate(self.values):
            if _kind(candidate) == _kind(value) and candidate == value:
                return i
        return None

    def sample(self, rng: random.Random) -> Value:
        return self.values[rng.randrange(len(self.values))]

    def distribution(self) -> BaseDistribution:
        # Optuna matches choices with ==, for which True == 1: it sees indices, never the values.
        return CategoricalDistribution(tuple(range(len(self.values))))


@dataclass(frozen=True)
class Stepped(Dimension):
    """``low + i * step`` for ``i`` in ``0 .. size - 1``; ints when ``integer``."""

    name: str
    low: float
    step: float
    count: int
    integer: bool
    log: bool
    decimals: int

    @property
    def size(self) -> int:
        return self.count

    def value_at(self, index: int) -> Value:
        raw = self.low + index * self.step
        return round(raw) if self.integer else round(raw, self.decimals)

    def index_of(self, value: Value) -> int | None:
        if not _is_number(value) or not math.isfinite(value):
            return None
        index = round((value - self.low) / self.step)
        if not 0 <= index < self.count:
            return None
        expected = self.value_at(index)
        assert _is_number(expected)
        return index if abs(expected - value) <= _STEP_TOLERANCE * max(1.0, abs(value)) else None

    def sample(self, rng: random.Random) -> Value:
        if self.log:
            # Integer log range (step 1): draw on a log scale over [low - 0.5, high + 0.5], as Optuna does.
            low, high = self.low - 0.5, self.low + self.count - 0.5
            index = round(math.exp(rng.uniform(math.log(max(low, 0.5)), math.log(high)))) - int(self.low)
            return self.value_at(min(max(index, 0), self.count - 1))
        return self.value_at(rng.randrange(self.count))

    def distribution(self) -> BaseDistribution:
        if self.log:
            return IntDistribution(int(self.low), int(self.low) + self.count - 1, log=True)
        # The step index, not the value: exact for float steps that do not divide the range in binary.
        return IntDistribution(0, self.count - 1)

    def to_optuna(self, value: Value) -> Value:
        index = self.index_of(value)
        assert index is not None
        return self.value_at(index) if self.log else index

    def from_optuna(self, raw: object) -> Value:
        assert isinstance(raw, int)
        return self.value_at(raw - int(self.low) if self.log else raw)


@dataclass(frozen=True)
class Continuous(Dimension):
    name: str
    low: float
    high: float
    log: bool

    @property
    def size(self) -> None:
        return None

    def value_at(self, index: int) -> Value:
        raise TypeError(f"parameter {self.name} is a continuous range: it has no grid")

    def index_of(self, value: Value) -> int | None:
        raise TypeError(f"parameter {self.name} is a continuous range: it has no grid")

    def _round(self, x: float) -> float:
        if x != 0:
            x = round(x, CONTINUOUS_SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(x))))
        return min(max(x, self.low), self.high)

    def key(self, value: Value) -> float:
        assert isinstance(value, float)
        return value

    def canonical(self, value: Value) -> Value:
        if not _is_number(value) or not math.isfinite(value) or not self.low <= value <= self.high:
            raise SearchSpaceError(
                f"parameter {self.name}: {value!r} is not a number in [{self.low:g}, {self.high:g}]"
            )
        return self._round(float(value))

    def sample(self, rng: random.Random) -> Value:
        if self.log:
            return self._round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self._round(rng.uniform(self.low, self.high))

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=self.log)

    def to_optuna(self, value: Value) -> Value:
        return value

    def from_optuna(self, raw: object) -> Value:
        assert isinstance(raw, float)
        return self._round(raw)


def _whole(x: float) -> bool:
    return float(x).is_integer()


def dimension(p: SearchParameter) -> Dimension:
    """The dimension for ``p``, or :class:`SearchSpaceError` saying what is wrong with it."""
    where = f"parameter {p.name}"
    has_range = p.min is not None or p.max is not None
    if p.values is not None:
        if has_range or p.step is not None or p.log or p.integer:
            raise SearchSpaceError(f"{where}: give either values or a range (min, max, step), not both")
        if not p.values:
            raise SearchSpaceError(f"{where}: values is empty")
        cat = Categorical(p.name, tuple(p.values))
        for i, v in enumerate(p.values):
            if isinstance(v, float) and not math.isfinite(v):
                raise SearchSpaceError(f"{where}: {v!r} is not a finite number")
            if cat.index_of(v) != i:
                raise SearchSpaceError(f"{where}: {v!r} is listed twice")
        return cat
    if p.min is None or p.max is None:
        raise SearchSpaceError(f"{where}: give values, or a range with both min and max")
    low, high = float(p.min), float(p.max)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SearchSpaceError(f"{where}: min and max must be finite numbers")
    if low >= high:
        raise SearchSpaceError(f"{where}: min ({low:g}) must be less than max ({high:g})")
    if p.log and low <= 0:
        raise SearchSpaceError(f"{where}: a log-scale range needs min > 0")
    if p.step is not None:
        step = float(p.step)
        if not math.isfinite(step) or step <= 0:
            raise SearchSpaceError(f"{where}: step must be a positive number")
        if p.log:
            raise SearchSpaceError(f"{where}: a log-scale range takes no step")
        integer = p.integer or (_whole(low) and _whole(high) and _whole(step))
        if integer and not (_whole(low) and _whole(high) and _whole(step)):
            raise SearchSpaceError(f"{where}: an integer range needs whole min, max and step")
        count = math.floor((high - low) / step + _STEP_TOLERANCE) + 1
        return Stepped(p.name, low, step, count, integer, False, max(_decimals(low), _decimals(step)))
    if p.integer:
        if not (_whole(low) and _whole(high)):
            raise SearchSpaceError(f"{where}: an integer range needs whole min and max")
        return Stepped(p.name, low, 1.0, int(high - low) + 1, True, p.log, 0)
    return Continuous(p.name, low, high, p.log)


class Space:
    """The product of the dimensions: sizes, grid points, identity and validation of configurations."""

    def __init__(self, parameters: Sequence[SearchParameter]) -> None:
        if not parameters:
            raise SearchSpaceError("the search space is empty: give at least one parameter")
        names = [p.name for p in parameters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SearchSpaceError(f"parameters named more than once: {', '.join(duplicates)}")
        self.dimensions: tuple[Dimension, ...] = tuple(dimension(p) for p in parameters)
        sizes = [d.size for d in self.dimensions]
        self.size: int | None = math.prod(s for s in sizes if s is not None) if None not in sizes else None

    def point_at(self, index: int) -> Params:
        """The ``index``-th point of the grid (see the module docstring for the order)."""
        if self.size is None or not 0 <= index < self.size:
            raise IndexError(f"grid index {index} out of range")
        params: Params = {}
        for d in reversed(self.dimensions):
            assert d.size is not None
            index, i = divmod(index, d.size)
            params[d.name] = d.value_at(i)
        return {d.name: params[d.name] for d in self.dimensions}

    def index_of(self, params: Params) -> int:
        """The grid index of canonical ``params`` (finite spaces only)."""
        index = 0
        for d in self.dimensions:
            assert d.size is not None
            i = d.index_of(params[d.name])
            assert i is not None
            index = index * d.size + i
        return index

    def canonical(self, params: Mapping[str, Value]) -> Params:
        """``params`` checked against the space and written as the space produces them."""
        known = {d.name for d in self.dimensions}
        unknown = sorted(set(params) - known)
        missing = [d.name for d in self.dimensions if d.name not in params]
        if unknown or missing:
            detail = "; ".join(
                part
                for part in (
                    f"unknown parameters {', '.join(unknown)}" if unknown else "",
                    f"missing parameters {', '.join(missing)}" if missing else "",
                )
                if part
            )
            raise SearchSpaceError(f"configuration {dict(params)!r} does not fit the search space: {detail}")
        return {d.name: d.canonical(params[d.name]) for d in self.dimensions}

    def key(self, params: Params) -> Key:
        """The identity of canonical ``params``: equal keys are the same configuration."""
        return tuple(d.key(params[d.name]) for d in self.dimensions)

    def sample(self, rng: random.Random) -> Params:
        return {d.name: d.sample(rng) for d in self.dimensions}

    def distributions(self) -> dict[str, BaseDistribution]:
        return {d.name: d.distribution() for d in self.dimensions}

    def to_optuna(self, params: Params) -> dict[str, Value]:
        return {d.name: d.to_optuna(params[d.name]) for d in self.dimensions}

    def from_optuna(self, raw: Mapping[str, object]) -> Params:
        return {d.name: d.from_optuna(raw[d.name]) for d in self.dimensions}
