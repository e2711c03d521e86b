"""Declared options: each family's options dataclass carries its defaults, help and
constraints in its fields (as scikit-learn's `_parameter_constraints` does), and one
validator coerces values from the command line or YAML and writes every message.

    @dataclass
    class Options:
        latent_dim: int = option(16, "Latent code dimension.", Interval(int, 1, None))
        decoder: str = option("auto", "Decoder likelihood.", Choice("auto", "bernoulli", "gaussian"))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gen.runtime.errors import ConfigError


@dataclass(frozen=True)
class Interval:
    """A number of `type` (int or float) between `low` and `high` (None: unbounded); `closed`
    says which ends are included: both, left, right or neither."""

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def check(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        lo_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return lo_ok and hi_ok

    def describe(self) -> str:
        what = "an integer" if self.type is int else "a number"
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            return f"{what} in {'[' if left else '('}{self.low}, {self.high}{']' if right else ')'}"
        if self.low is not None:
            return f"{what} {'>=' if left else '>'} {self.low}"
        if self.high is not None:
            return f"{what} {'<=' if right else '<'} {self.high}"
        return what

    def coerce(self, text: str) -> Any:
        return self.type(text) if self.type is float else int(text)


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def __init__(self, *values: str):
        object.__setattr__(self, "values", tuple(values))

    def check(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def describe(self) -> str:
        return f"one of {', '.join(self.values)}"

    def coerce(self, text: str) -> Any:
        return text


@dataclass(frozen=True)
class ListOf:
    """A list of items that each satisfy `item` (on the command line: comma-separated)."""

    item: Interval

    def check(self, value: Any) -> bool:
        return isinstance(value, list) and all(self.item.check(v) for v in value)

    def describe(self) -> str:
        return f"a list of {self.item.describe().replace('an integer', 'integers').replace('a number', 'numbers')}"

    def coerce(self, text: str) -> Any:
        return [self.item.coerce(part) for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class Text:
    """Any string (a path, a column name)."""

    def check(self, value: Any) -> bool:
        return isinstance(value, str)

    def describe(self) -> str:
        return "a string"

    def coerce(self, text: str) -> Any:
        return text


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def check(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "true or false"

    def coerce(self, text: str) -> Any:
        lowered = text.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError(text)


Constraint = Interval | Choice | ListOf | Text | Flag


def option(default: Any, help: str, constraint: Constraint, optional: bool = False) -> Any:
    """A dataclass field that is an option: default, one-line help, constraint; `optional`
    allows None (meaning: not set)."""
    meta = {"help": help, "constraint": constraint, "optional": optional}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    """An option as `gen models NAME` lists it."""

    name: str
    default: Any
    help: str
    constraint: Constraint
    optional: bool

    def describe(self) -> str:
        return self.constraint.describe() + (", or null" if self.optional else "")


def specs(cls: type) -> list[OptionSpec]:
    """The declared options of an options dataclass, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(OptionSpec(f.name, default, f.metadata["help"], f.metadata["constraint"], f.metadata["optional"]))
    return out


def check_value(spec: OptionSpec, value: Any, where: str) -> Any:
    """Coerce `value` (a string from the command line, or a YAML value) and check it. A bare
    command-line flag arrives as True: only a Flag option may be given without a value."""
    if value is None and spec.optional:
        return None
    if value is True and not isinstance(spec.constraint, Flag):
        raise ConfigError(f"{where} {spec.name}: needs a value ({spec.describe()})")
    if isinstance(spec.constraint, Text) and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # YAML reads a column named 2020 as a number
    if isinstance(value, str) and not isinstance(spec.constraint, (Choice, Text)):
        if spec.optional and value.lower() in ("none", "null"):
            return None
        try:
            value = spec.constraint.coerce(value)
        except ValueError:
            raise ConfigError(f"{where} {spec.name}={value!r}: expected {spec.describe()}") from None
    if isinstance(spec.constraint, Interval) and spec.constraint.type is float and isinstance(value, int) \
            and not isinstance(value, bool):
        value = float(value)
    if not spec.constraint.check(value):
        raise ConfigError(f"{where} {spec.name}={value!r}: expected {spec.describe()}")
    return value


def build(cls: type, raw: dict[str, Any], where: str) -> Any:
    """An instance of options dataclass `cls` from `raw` (only keys it declares), every value
    checked against its constraint; missing keys take their declared defaults."""
    values = {}
    for spec in specs(cls):
        if spec.name in raw:
            values[spec.name] = check_value(spec, raw[spec.name], where)
    return cls(**values)
