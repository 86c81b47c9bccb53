"""Experiment definitions: one small TOML file per table or figure of the paper.

The shipped definitions live in ``s3rec/reproduce/experiments/NAME.toml``; any other TOML file of the
same form can be given by path. Keys:

- ``title``, ``figure`` (what it reproduces), ``notes`` (optional, shown in the report);
- ``kind``: how the report shows it: ``table`` (methods x metrics per dataset, with a paired t-test),
  ``bars`` (grouped bars per dataset), ``lines`` (a metric against the varied setting),
  ``convergence`` (validation metric per fine-tuning epoch);
- ``protocol`` (``sampled`` or ``full``...), ``datasets``, ``seeds`` (fine-tuning seeds),
  ``pretrain_seed`` (one pre-training run serves every fine-tuning seed), ``metrics``,
  ``primary_metric`` (plotted; picks the best baseline for the t-test);
- ``[finetune]`` / ``[pretrain]``: settings (as ``--set``) for every fine-tuning / pre-training run;
- ``[vary]`` (optional): ``setting``, ``values``, ``label``: one run per value. ``pretrain_epoch`` is
  the pre-training checkpoint fine-tuned from (0: none); any other setting is a fine-tuning setting,
  applied to pre-training too when pre-training has it (``train_fraction``);
- ``pairs`` (optional, tables): ``[[a, b], ...]`` method ids: the report adds a paired t-test of
  ``a`` against ``b`` per dataset (beside ``ours`` against the best baseline);
- ``[[methods]]``: ``id`` (used in run directory names), ``label`` (default: the id; the paper's
  tables are looked up by it), ``model``, ``finetune`` (settings), ``pretrain`` (present: fine-tune
  from an S3-Rec pre-training with these settings; ``{}`` = the defaults), ``ours`` (the method tested
  against the best baseline), ``unsupported`` (a reason: its runs are listed, never run),
  ``checkpoint_from`` (another experiment's folder name: train nothing, test the best checkpoint of
  the run with the same id there under this experiment's protocol; for models whose training under
  this protocol is too costly; the report says so beside the method), ``preset`` (a shipped preset's
  settings under the method's ``finetune`` (and over the experiment's ``[finetune]``); its
  ``[pretrain]`` under the method's ``pretrain``: a ``pretrained`` preset makes the method fine-tune
  from that pre-training), ``paper_as`` (the paper's method
  whose published numbers the report puts beside this one, e.g. "S3-Rec"; default: the label),
  ``datasets`` (tables only: the method runs on these datasets only, e.g. a dataset's own preset).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..config import load_toml, read_toml_text
from ..errors import ConfigError

KINDS = ("table", "bars", "lines", "convergence")
PRETRAIN_EPOCH = "pretrain_epoch"
_ID = re.compile(r"^[A-Za-z0-9_.+-]+$")
_TOP_KEYS = {"title", "figure", "kind", "protocol", "datasets", "seeds", "pretrain_seed", "metrics", "primary_metric",
             "notes", "finetune", "pretrain", "vary", "methods", "pairs"}
_METHOD_KEYS = {"id", "label", "model", "finetune", "pretrain", "ours", "unsupported", "checkpoint_from", "preset",
                "paper_as", "datasets"}


@dataclass(frozen=True)
class Method:
    id: str
    label: str
    model: str
    finetune: dict = field(default_factory=dict)
    pretrain: dict | None = None  # None: no pre-training
    ours: bool = False
    unsupported: str = ""
    checkpoint_from: str = ""  # an experiment folder: test the best checkpoint of the same run id there
    preset: str = ""  # a shipped preset whose settings lie under the method's own (already merged in)
    paper_as: str = ""  # the paper's method whose numbers stand beside this one (default: the label)
    datasets: tuple[str, ...] = ()  # run on these datasets only (a dataset's own preset); empty: all

    def applies(self, dataset: str) -> bool:
        """Whether this method runs on ``dataset`` (its ``datasets``, compared case-insensitively)."""
        return not self.datasets or dataset.lower() in {d.lower() for d in self.datasets}


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    figure: str
    kind: str
    protocol: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    pretrain_seed: int
    metrics: tuple[str, ...]
    primary_metric: str
    methods: tuple[Method, ...]
    finetune: dict = field(default_factory=dict)
    pretrain: dict = field(default_factory=dict)
    vary_setting: str = ""
    vary_values: tuple = ()
    vary_label: str = ""
    notes: str = ""
    pairs: tuple[tuple[str, str], ...] = ()  # method ids (a, b): a paired t-test of a against b per dataset

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Experiment":
        data = dict(data)
        data["methods"] = tuple(Method(**{**m, "datasets": tuple(m.get("datasets", ()))}) for m in data["methods"])
        for k in ("datasets", "seeds", "metrics", "vary_values"):
            data[k] = tuple(data[k])
        data["pairs"] = tuple(tuple(p) for p in data.get("pairs", ()))
        return cls(**data)


def _experiments_dir():
    return resources.files("s3rec.reproduce") / "experiments"


def experiment_names() -> list[str]:
    """The shipped experiments, in the paper's order."""
    order = ["table2", "full_ranking", "ablation", "pretrain_others", "limited_data", "pretrain_epochs", "convergence"]
    names = sorted(p.name[:-5] for p in _experiments_dir().iterdir() if p.name.endswith(".toml"))
    return [n for n in order if n in names] + [n for n in names if n not in order]


def _need(data: dict, key: str, typ, where: str):
    if key not in data:
        raise ConfigError(f"{where}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, typ):
        raise ConfigError(f"{where}: {key} must be {getattr(typ, '__name__', typ)}, got {value!r}")
    return value


def parse_experiment(data: dict, name: str, where: str) -> Experiment:
    """Check a parsed TOML definition and turn it into an :class:`Experiment` (errors name ``where``)."""
    from ..metrics import METRIC_NAMES

    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    kind = _need(data, "kind", str, where)
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    metrics = tuple(_need(data, "metrics", list, where))
    primary = data.get("primary_metric", metrics[0] if metrics else "")
    for m in (*metrics, primary):
        if m not in METRIC_NAMES:
            raise ConfigError(f"{where}: unknown metric {m!r}; known: {', '.join(METRIC_NAMES)}")
    methods = []
    for i, m in enumerate(_need(data, "methods", list, where)):
        mwhere = f"{where}: methods[{i}]"
        if not isinstance(m, dict):
            raise ConfigError(f"{mwhere}: expected a table")
        if set(m) - _METHOD_KEYS:
            raise ConfigError(f"{mwhere}: unknown keys {sorted(set(m) - _METHOD_KEYS)}; known: {sorted(_METHOD_KEYS)}")
        mid = _need(m, "id", str, mwhere)
        if not _ID.match(mid):
            raise ConfigError(f"{mwhere}: id {mid!r} may hold only letters, digits and _ . + -")
        pre = m.get("pretrain")
        if pre is not None and not isinstance(pre, dict):
            raise ConfigError(f"{mwhere}: pretrain must be a table of settings")
        finetune = dict(m.get("finetune", {}))
        preset_name = str(m.get("preset", ""))
        if preset_name:
            from ..presets import load_preset

            try:
                preset = load_preset(preset_name)
            except ConfigError as e:
                raise ConfigError(f"{mwhere}: {e}") from None
            finetune = {**preset.finetune, **finetune}
            if preset.pretrained or pre is not None:  # its [pretrain] applies wherever the method pre-trains
                pre = {**preset.pretrain, **(pre or {})}
        methods.append(Method(mid, str(m.get("label", mid)), _need(m, "model", str, mwhere).lower(),
                              finetune, None if pre is None else dict(pre),
                              bool(m.get("ours", False)), str(m.get("unsupported", "")),
                              str(m.get("checkpoint_from", "")), preset_name, str(m.get("paper_as", "")),
                              tuple(m.get("datasets", ()))))
        if not all(isinstance(d, str) for d in methods[-1].datasets):
            raise ConfigError(f"{mwhere}: datasets must be a list of dataset names")
        if methods[-1].checkpoint_from and not _ID.match(methods[-1].checkpoint_from):
            raise ConfigError(f"{mwhere}: checkpoint_from must name an experiment folder, got {methods[-1].checkpoint_from!r}")
    ids = [m.id for m in methods]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: method ids must be distinct: {ids}")
    vary = data.get("vary", {})
    setting = str(vary.get("setting", ""))
    values = tuple(vary.get("values", ()))
    if vary and (not setting or not values):
        raise ConfigError(f"{where}: [vary] needs a setting and a non-empty list of values")
    if setting == PRETRAIN_EPOCH and not all(isinstance(v, int) and v >= 0 for v in values):
        raise ConfigError(f"{where}: pretrain_epoch values must be integers >= 0")
    pairs = data.get("pairs", [])
    if not isinstance(pairs, list):
        raise ConfigError(f"{where}: pairs must be a list of [method id, other method id]")
    for p in pairs:
        if not (isinstance(p, list) and len(p) == 2 and all(x in ids for x in p) and p[0] != p[1]):
            raise ConfigError(f"{where}: pairs must be a list of [method id, other method id], ids among {ids}; got {p!r}")
    if any(m.datasets for m in methods) and kind != "table":
        raise ConfigError(f"{where}: a method's datasets are for tables only (kind = \"table\"), not {kind!r}")
    if pairs and kind != "table":
        raise ConfigError(f"{where}: pairs are tested in tables only (kind = \"table\"), not {kind!r}")
    seeds = tuple(_need(data, "seeds", list, where))
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers")
    return Experiment(
        name=name,
        title=str(data.get("title", name)),
        figure=str(data.get("figure", "")),
        kind=kind,
        protocol=str(data.get("protocol", "sampled")),
        datasets=tuple(_need(data, "datasets", list, where)),
        seeds=seeds,
        pretrain_seed=int(data.get("pretrain_seed", 42)),
        metrics=metrics,
        primary_metric=primary,
        methods=tuple(methods),
        finetune=dict(data.get("finetune", {})),
        pretrain=dict(data.get("pretrain", {})),
        vary_setting=setting,
        vary_values=values,
        vary_label=str(vary.get("label", setting)),
        notes=str(data.get("notes", "")).strip(),
        pairs=tuple((a, b) for a, b in pairs),
    )


def load_experiment(name_or_path: str) -> Experiment:
    """A shipped experiment by name (``table2``) or a TOML file by path."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: experiment file not found")
        text, name, where = read_toml_text(path, "experiment"), path.stem, str(path)
    else:
        res = _experiments_dir() / f"{name_or_path}.toml"
        if not res.is_file():
            raise ConfigError(f"unknown experiment {name_or_path!r}; available: {', '.join(experiment_names())} "
                              "(or the path of a .toml file)")
        text, name, where = res.read_text(encoding="utf-8"), name_or_path, f"experiment {name_or_path}"
    return parse_experiment(load_toml(text, where), name, where)


def narrowed(exp: Experiment, datasets=None, seeds=None, methods=None, values=None, pretrain_seed=None) -> Experiment:
    """The experiment with its grid replaced where given (a small grid for a small machine)."""
    changes: dict = {}
    if datasets:
        changes["datasets"] = tuple(datasets)
    if seeds:
        changes["seeds"] = tuple(int(s) for s in seeds)
    if pretrain_seed is not None:
        changes["pretrain_seed"] = int(pretrain_seed)
    if methods:
        known = {m.id.lower(): m for m in exp.methods}
        missing = [m for m in methods if m.lower() not in known]
        if missing:
            raise ConfigError(f"{exp.name} has no method {', '.join(missing)}; it has: {', '.join(m.id for m in exp.methods)}")
        changes["methods"] = tuple(known[m.lower()] for m in dict.fromkeys(methods))
        kept = {m.id for m in changes["methods"]}
        changes["pairs"] = tuple(p for p in exp.pairs if set(p) <= kept)
    if values:
        if not exp.vary_setting:
            raise ConfigError(f"{exp.name} varies no setting: --values does not apply")
        parsed = []
        for v in values:
            try:
                parsed.append(int(v))
            except ValueError:
                try:
                    parsed.append(float(v))
                except ValueError:
                    raise ConfigError(f"--values: {v!r} is not a number") from None
        changes["vary_values"] = tuple(parsed)
    return dataclasses.replace(exp, **changes)
