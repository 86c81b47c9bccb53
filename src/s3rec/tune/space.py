"""Search spaces: which settings a search samples, over which ranges, as a small TOML file.

The shipped spaces are ``s3rec/tune/spaces/NAME.toml``; ``--space`` takes such a NAME or the path of
any file of the same form::

    description = "one line, shown by `s3rec tune --help`"

    [finetune]                       # settings of TrainConfig (as --set takes them)
    lr = { type = "float", low = 1e-4, high = 1e-2, log = true }
    loss = { type = "categorical", choices = ["bce", "ce", "gbce"] }
    n_negatives = { type = "int", low = 64, high = 1024, log = true, when = { loss = ["gbce"] } }

    [pretrain]                       # optional: settings of PretrainConfig; each distinct
    mask_p = { type = "float", low = 0.1, high = 0.5, step = 0.1 }   # pre-training is run once

A parameter has a ``type``: ``float`` or ``int`` (``low`` < ``high``, optional ``log = true`` with
``low`` > 0, or a ``step`` > 0, not both) or ``categorical`` (``choices``, a non-empty list).
``when = { OTHER = [values] }`` samples it only when the categorical parameter OTHER, listed earlier
in the same table, took one of those values (for example ``n_negatives`` only for sampled losses).
Every bound and choice is checked as a setting when the file is read, so a typo or an impossible
range fails at once, with one line naming the file and the parameter.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

SECTIONS = ("finetune", "pretrain")
KINDS = ("float", "int", "categorical")
_TOP_KEYS = {"description", *SECTIONS}
_PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}
# chosen by the command line, never searched
NOT_SEARCHED = ("dataset", "init", "device", "model_params")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class Param:
    """One searched setting."""

    section: str  # "finetune" or "pretrain"
    name: str  # the setting's name (a TrainConfig / PretrainConfig field or a model hyper-parameter)
    kind: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: dict = field(default_factory=dict)  # earlier categorical parameter -> the values that enable this one

    @property
    def key(self) -> str:
        """The parameter's name in the optuna study: ``SECTION.NAME``."""
        return f"{self.section}.{self.name}"

    def to_dict(self) -> dict:
        out = {"type": self.kind}
        if self.kind == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log, step=self.step)
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    params: tuple[Param, ...]
    where: str = ""

    def section(self, name: str) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.section == name)

    def to_dict(self) -> dict:
        """The space's definition (what identifies it in a study's name)."""
        return {s: {p.name: p.to_dict() for p in self.section(s)} for s in SECTIONS if self.section(s)}

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def sample(self, trial) -> dict[str, dict]:
        """Sample one configuration with an optuna trial: ``{"finetune": {...}, "pretrain": {...}}``
        (a conditional parameter whose condition does not hold is left out)."""
        out: dict[str, dict] = {s: {} for s in SECTIONS}
        for p in self.params:
            taken = out[p.section]
            if any(taken.get(other) not in values for other, values in p.when.items()):
                continue
            if p.kind == "categorical":
                taken[p.name] = trial.suggest_categorical(p.key, list(p.choices))
            elif p.kind == "int":
                taken[p.name] = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
            else:
                taken[p.name] = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
        return out

    def check(self, finetune_base, pretrain_base) -> None:
        """Check every bound and choice as a setting of these base configs (a ConfigError names it)."""
        from ..config import with_overrides

        bases = {"finetune": finetune_base, "pretrain": pretrain_base}
        for p in self.params:
            values = p.choices if p.kind == "categorical" else (p.low, p.high)
            for v in values:
                try:
                    with_overrides(bases[p.section], {p.name: v}).validate()
                except ConfigError as e:
                    raise ConfigError(f"space {self.where}: {p.key} = {v!r}: {e}") from None


def _spaces_dir():
    return resources.files("s3rec.tune") / "spaces"


def space_names() -> list[str]:
    """The shipped search spaces, sorted."""
    return sorted(p.name[:-5] for p in _spaces_dir().iterdir() if p.name.endswith(".toml"))


def describe_spaces() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped space (read, not checked: cheap, for help texts)."""
    return [(n, parse_space((_spaces_dir() / f"{n}.toml").read_text(encoding="utf-8"), n, n).description)
            for n in space_names()]


def load_space(ref: str) -> Space:
    """A shipped space by name, or a space file by path (ending in .toml or containing a slash);
    checked against the default settings."""
    from ..config import PretrainConfig, TrainConfig, read_toml_text

    if ref.endswith(".toml") or "/" in ref or "\\" in ref:
        path = Path(ref)
        if not path.is_file():
            raise ConfigError(f"space file {ref} not found")
        text, name = read_toml_text(path, "space"), path.stem
    else:
        res = _spaces_dir() / f"{ref}.toml"
        if not res.is_file():
            raise ConfigError(f"unknown search space {ref!r}; shipped: {', '.join(space_names())} "
                              "(or give the path of a .toml space file)")
        text, name = res.read_text(encoding="utf-8"), ref
    if not _NAME.match(name):
        raise ConfigError(f"space {ref}: the file name may hold only letters, digits and _.+-")
    space = parse_space(text, name, ref)
    space.check(TrainConfig(), PretrainConfig())
    return space


def _number(value, where: str, what: str, kind: str):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {what} must be a number, got {value!r}")
    if kind == "int" and not isinstance(value, int):
        raise ConfigError(f"{where}: {what} must be an integer for type int, got {value!r}")
    return float(value) if kind == "float" else value


def _param(section: str, name: str, spec, earlier: dict[str, Param], where: str) -> Param:
    at = f"{where}: {section}.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{at}: expected a table such as {{ type = \"float\", low = 0.1, high = 0.5 }}")
    unknown = sorted(set(spec) - _PARAM_KEYS)
    if unknown:
        raise ConfigError(f"{at}: unknown key {unknown[0]!r}; known: {', '.join(sorted(_PARAM_KEYS))}")
    if name in NOT_SEARCHED:
        raise ConfigError(f"{at}: {name} is chosen on the command line, not searched")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{at}: type must be one of {', '.join(KINDS)}, got {kind!r}")
    when = spec.get("when", {})
    if not isinstance(when, dict):
        raise ConfigError(f"{at}: when must be a table {{ OTHER = [values] }}")
    conds = {}
    for other, values in when.items():
        dep = earlier.get(other)
        if dep is None or dep.kind != "categorical":
            raise ConfigError(f"{at}: when names {other!r}, which is not a categorical parameter listed before it in [{section}]")
        values = values if isinstance(values, list) else [values]
        bad = [v for v in values if v not in dep.choices]
        if bad or not values:
            raise ConfigError(f"{at}: when {other} = {bad or values!r}: not among its choices {list(dep.choices)}")
        conds[other] = tuple(values)
    if kind == "categorical":
        extra = sorted(k for k in ("low", "high", "log", "step") if k in spec)
        if extra:
            raise ConfigError(f"{at}: {extra[0]} does not apply to type categorical (use choices)")
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{at}: choices must be a non-empty list")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise ConfigError(f"{at}: choices repeat a value")
        if any(not isinstance(c, (str, int, float, bool)) for c in choices):
            raise ConfigError(f"{at}: choices must be strings, numbers or booleans")
        return Param(section, name, kind, choices=tuple(choices), when=conds)
    if "choices" in spec:
        raise ConfigError(f"{at}: choices apply to type categorical only")
    for k in ("low", "high"):
        if k not in spec:
            raise ConfigError(f"{at}: missing {k}")
    low, high = _number(spec["low"], at, "low", kind), _number(spec["high"], at, "high", kind)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false")
    step = spec.get("step")
    if step is not None:
        step = _number(step, at, "step", kind)
        if step <= 0:
            raise ConfigError(f"{at}: step must be > 0, got {step!r}")
        if log:
            raise ConfigError(f"{at}: give log or step, not both")
    if not low < high:
        raise ConfigError(f"{at}: low must be < high, got low {low!r}, high {high!r}")
    if log and low <= 0:
        raise ConfigError(f"{at}: log = true needs low > 0, got {low!r}")
    return Param(section, name, kind, low, high, log, step, when=conds)


def parse_space(text: str, name: str, where: str) -> Space:
    """Parse a space file's text (structure and ranges; :meth:`Space.check` checks the values)."""
    from ..config import parse_toml_head

    data, desc = parse_toml_head(text, "space", where, _TOP_KEYS)
    params: list[Param] = []
    for section in SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"space {where}: [{section}] must be a table")
        earlier: dict[str, Param] = {}
        for pname, spec in table.items():
            p = _param(section, pname, spec, earlier, f"space {where}")
            earlier[pname] = p
            params.append(p)
    if not params:
        raise ConfigError(f"space {where}: searches nothing (no parameter under [finetune] or [pretrain])")
    return Space(name, desc, tuple(params), where)
