"""Sweep configuration: YAML in, a validated, immutable :class:`SweepConfig` out.

Every problem is reported as a :class:`~lin2net.errors.ConfigError` naming the
dotted key and the offending value, so the CLI can print one line and exit 2.
The accepted keys, their defaults and the axis forms are documented in the
docs/config.md.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lin2net.dynamics import families, registry
from lin2net.dynamics.sgd.data import MAX_DATA, DataSpec
from lin2net.errors import ConfigError
from lin2net.validation import (
    bounded_repr,
    clip,
    describe,
    finite_float,
    integer,
    positive_float,
    positive_int,
    reject_unknown,
    suggest,
)

COMMON_KEYS = (
    "name",
    "seed",
    "trajectories",
    "grid",
    "init",
    "loss_tol",
    "max_steps",
    "divergence_threshold",
    "integrator",
    "algorithm",
    "keep",
    "model",
)


def top_level_keys() -> tuple[str, ...]:
    """Every top-level key: the common ones, then each registered dynamics' own."""
    return tuple(dict.fromkeys([*COMMON_KEYS, *(key for entry in registry.entries() for key in entry.config_keys)]))


# As registered at import (a dynamics registered later is read through the functions).
TOP_LEVEL_KEYS = top_level_keys()
GRID_KEYS = registry.grid_keys()  # the common axes, then those of each registered dynamics
INIT_KINDS = ("sphere", "gaussian", "explicit")
INTEGRATORS = ("compiled", "reduced", "full")
AXIS_FORMS = ("linspace", "geomspace")
ALGORITHMS = tuple(name for name in registry.names() if not registry.is_family(name))  # algorithm: values
SAMPLINGS = ("without_replacement", "with_replacement")
DATA_KEYS = ("n", "x", "noise")
DATA_X_KINDS = ("gaussian", "ones")
KEEP_CHOICES = ("rows", "summary", "both")  # what a sweep writes per cell: trajectory rows, a summary, or both
DEFAULT_WINDOW = 1000  # final-window length for SGD averages (at most max_steps)

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "trajectories": 1000,
    "init": "sphere",
    "loss_tol": 1e-10,
    "max_steps": 100_000,
    "divergence_threshold": 1e30,
    "integrator": "compiled",
}
GRID_DEFAULTS: dict[str, Any] = {"phi": 1.0, "d": 10}

# Upper limits, checked before anything is allocated, so a typo such as an
# extra three zeros is a one-line error rather than a machine out of memory.
MAX_AXIS_VALUES = 1_000_000  # num of a linspace/geomspace axis
MAX_CELLS = 1_000_000  # cell ids and parameters are held in memory and in shard footers
MAX_TRAJECTORIES = 1_000_000_000  # per cell; memory grows with it (1e6 at d = 100: ~400 MB)
MAX_D = 10_000_000  # one trajectory's (a, b) is 16 d bytes
MAX_STEPS = 2**53  # step counts stay exact as float64
MAX_SEED = 2**63 - 1  # a root seed fits a signed 64-bit integer
MAX_PARAMETER = 1e150  # eta, lambda0, phi (and derived eta): their squares and products stay finite
MAX_NAME_LENGTH = 100  # name labels the run and is the default output directory runs/<name>
MAX_YAML_NODES = 1_000_000  # nodes of a config after expanding YAML aliases (guards against alias bombs)
# A config is read only up to this size, and parsed only if it holds at most
# this many values as written (each refused within a second, before parsing):
# 10^5 explicit data.x values fit, long axes belong in linspace/geomspace.
MAX_CONFIG_BYTES = 4_000_000
MAX_YAML_VALUES = 250_000
MAX_SGD_STEPS = 2**46  # SGD's random-number counters hold the step in 46 bits (lin2net.kernels.counter_rng)


@dataclass(frozen=True)
class ExplicitInit:
    """One given initialization (a, b); d is its length, λ0 its squared norm."""

    a: tuple[float, ...]
    b: tuple[float, ...]

    @property
    def d(self) -> int:
        return len(self.a)

    @property
    def lambda0(self) -> float:
        return float(np.dot(self.a, self.a) + np.dot(self.b, self.b))


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep. ``axes`` maps each grid key to its expanded values.

    Exactly one of ``eta`` and ``eta_lambda0`` is an axis; ``lambda0`` and ``d``
    are axes unless the init is explicit (then they come from the vectors).
    """

    name: str
    axes: Mapping[str, tuple[float, ...] | tuple[int, ...]]
    seed: int = 0
    trajectories: int = 1000
    init: str = "sphere"
    explicit: ExplicitInit | None = None
    loss_tol: float = 1e-10
    max_steps: int = 100_000
    divergence_threshold: float = 1e30
    integrator: str = "compiled"
    axis_specs: Mapping[str, Any] = field(default_factory=dict, compare=False)
    algorithm: str = "gd"  # the registry entry: gd, sgd, or a family's (deep, vector, vector-sgd, …)
    data: Any = None  # sgd: a DataSpec; vector, relu: the family data spec (lin2net.dynamics.vector.data)
    family: str = "shallow"  # model.family
    explicit_theta: families.ExplicitTheta | None = None  # a family's init: {explicit: …}
    sampling: str = "without_replacement"
    window: int = DEFAULT_WINDOW
    keep: str = "rows"

    @property
    def eta_key(self) -> str:
        return "eta" if "eta" in self.axes else "eta_lambda0"

    def resolved(self) -> dict[str, Any]:
        """Plain-data form with defaults filled in and axes expanded; loads back
        to an equal config with :func:`parse_config`."""
        init: Any = self.init
        if self.explicit is not None:
            init = {"explicit": {"a": list(self.explicit.a), "b": list(self.explicit.b)}}
        if self.explicit_theta is not None:
            init = {"explicit": self.explicit_theta.as_config()}
        if self.family != "shallow":
            return self._resolved_family(init)
        resolved = {
            "name": self.name,
            "seed": self.seed,
            "trajectories": self.trajectories,
            "grid": {key: list(values) for key, values in self.axes.items()},
            "init": init,
            "loss_tol": self.loss_tol,
            "max_steps": self.max_steps,
            "divergence_threshold": self.divergence_threshold,
            "integrator": self.integrator,
        }
        if self.algorithm != "gd":  # GD's resolved config is unchanged (algorithm: gd is the default)
            resolved["algorithm"] = self.algorithm
        if self.data is not None:  # SGD's keys only for SGD
            x = self.data.x if isinstance(self.data.x, str) else list(self.data.x)
            resolved["data"] = {"n": self.data.n, "x": x, "noise": self.data.noise}
            resolved["sampling"] = self.sampling
            resolved["window"] = self.window
        if self.keep != "rows":  # only when set: the resolved config (and digest) of a rows sweep is unchanged
            resolved["keep"] = self.keep
        return resolved

    @property
    def user_algorithm(self) -> str:
        """``algorithm:`` as written: gd or sgd for a family's entry (``vector-sgd`` → sgd)."""
        entry = registry.get(self.algorithm)
        return str(entry.extras.get("algorithm", self.algorithm))

    def _resolved_family(self, init: Any) -> dict[str, Any]:
        """:meth:`resolved` of a model family: ``model:`` and ``data:`` as parsed,
        ``inputs`` in ``model:`` (not an axis a config writes), ``depth`` a grid axis."""
        model: dict[str, Any] = {"family": self.family}
        grid = {key: list(values) for key, values in self.axes.items() if key != "inputs"}
        if "inputs" in self.axes and self.explicit_theta is None:
            model["inputs"] = int(self.axes["inputs"][0])
        if self.explicit_theta is not None:
            grid.pop("depth", None)
            if "inputs" in self.axes:
                model["inputs"] = int(self.axes["inputs"][0])
        resolved: dict[str, Any] = {
            "name": self.name,
            "seed": self.seed,
            "trajectories": self.trajectories,
            "model": model,
            "grid": grid,
            "init": init,
            "loss_tol": self.loss_tol,
            "max_steps": self.max_steps,
            "divergence_threshold": self.divergence_threshold,
            "integrator": self.integrator,
            "algorithm": self.user_algorithm,
        }
        if self.data is not None:
            resolved["data"] = data_config(self.data)
        if self.keep != "rows":
            resolved["keep"] = self.keep
        return resolved


def data_config(spec: Any) -> dict[str, Any]:
    """A family data spec as the ``data:`` mapping it was read from (its ``as_config``
    if it has one, else its dataclass fields with tuples as lists)."""
    if hasattr(spec, "as_config"):
        config: dict[str, Any] = spec.as_config()
        return config
    from dataclasses import asdict

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return {key: plain(value) for key, value in asdict(spec).items() if value is not None}


def parse_family_data(mapping: Any, inputs: int) -> Any:
    """``data:`` of a data family, by the vector family's parser (:mod:`lin2net.dynamics.vector.data`)."""
    from lin2net.dynamics.vector.data import parse_vector_data

    return parse_vector_data(mapping, inputs)


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where installed: 5x faster


class _GuardedLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader that rejects duplicate keys, and refuses documents whose aliases
    expand to more than :data:`MAX_YAML_NODES` nodes (or refer to themselves)
    before building them. Reads what ``yaml.safe_dump`` wrote (OUT/config.yaml)."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError("", f"duplicate key {bounded_repr(key, 60)} at line {line}: each key may appear once")
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the nodes of ``root`` with every alias expanded, in time linear in the
    distinct nodes (sizes memoized per node): a config cannot hide a huge value
    behind a few lines of nested aliases."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        if done:
            active.discard(key)
            sizes[key] = min(1 + sum(sizes[id(child)] for child in children), MAX_YAML_NODES + 1)
            if sizes[key] > MAX_YAML_NODES:
                raise ConfigError("", f"YAML aliases expand to more than {MAX_YAML_NODES} values; write the values out")
            continue
        if key in sizes:
            continue
        if key in active:
            raise ConfigError("", "a YAML alias refers to itself (a recursive value); write the values out")
        active.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                raise ConfigError("", "a YAML alias refers to itself (a recursive value); write the values out")
            if id(child) not in sizes:
                stack.append((child, False))


class _Loader(_GuardedLoader):
    """:class:`_GuardedLoader` that also reads ``1e-10`` as a float (YAML 1.1 wants
    ``1.0e-10``): for configs people write."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_config(path: Path, overrides: Sequence[str] = ()) -> SweepConfig:
    """Read and validate a YAML config file; ``overrides`` (``key=value`` strings,
    see :func:`apply_overrides`) change the raw mapping first, so they are
    validated exactly like the file."""
    shown = _printable(str(path))
    try:
        text = read_bounded_text(Path(path))
    except FileNotFoundError:
        raise ConfigError("", f"config file not found: {shown}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"cannot read config file {shown}: it is not UTF-8 text") from None
    except OSError as exc:  # a directory, no permission, a file in the path, a symlink loop, a name too long
        raise ConfigError("", f"cannot read config file {shown}: {exc.strerror or exc.__class__.__name__}") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError("", f"cannot read config file {shown}: the path contains a NUL byte") from None
    if text is None:
        problem = f"is larger than {MAX_CONFIG_BYTES // 1_000_000} MB (a config is a few lines; use linspace/geomspace)"
        raise ConfigError("", f"config file {shown} {problem}")
    raw = apply_overrides(parse_yaml(text, source=shown), overrides)
    return parse_config(raw, default_name=default_name(Path(path).stem))


def read_bounded_text(path: Path, limit: int = MAX_CONFIG_BYTES) -> str | None:
    """The UTF-8 text of ``path``, or None if it holds more than ``limit`` bytes
    (at most ``limit + 1`` bytes are read: ``/dev/zero`` is refused at once)."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        return None
    return data.decode("utf-8")


def _printable(text: str) -> str:
    """``text`` with control characters and undecodable bytes escaped, for messages."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def default_name(stem: str) -> str:
    """A valid run name from a config file's stem: characters a name may not hold
    become ``_``, and it is cut to :data:`MAX_NAME_LENGTH` characters."""
    safe = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in stem)[:MAX_NAME_LENGTH].strip()
    while len(safe.encode("utf-8")) > 255:
        safe = safe[:-1]
    return safe if safe not in ("", ".", "..") else "sweep"


def check_name(name: Any) -> str:
    """``name`` labels a run and is its default output directory ``runs/<name>``,
    so it is a single path component: printable, no ``/`` or ``\\``, not ``.``
    or ``..``, at most :data:`MAX_NAME_LENGTH` characters."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("name", f"must be a non-empty string, got {describe(name)}")
    if len(name) > MAX_NAME_LENGTH or len(name.encode("utf-8", "surrogatepass")) > 255:
        raise ConfigError("name", f"must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    if not name.isprintable() or "/" in name or "\\" in name or name in (".", ".."):
        problem = "must be a label (printable, no '/' or backslash, not '.' or '..')"
        raise ConfigError("name", f"{problem}, got {describe(name)}")
    return name


_OVERRIDE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def apply_overrides(raw: Any, overrides: Sequence[str]) -> Any:
    """Return ``raw`` with each ``key=value`` of ``overrides`` applied in order.

    ``key`` is a dotted path (``max_steps``, ``grid.d``); missing intermediate
    mappings are created. ``value`` is read as YAML (``[1, 2]``,
    ``{geomspace: [0.01, 1, 5]}``, ``1e-8``). Only the syntax is checked here:
    the result goes through :func:`parse_config` like any file. ``raw`` itself
    is not modified.
    """
    if not overrides:
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return raw  # parse_config reports a non-mapping config
    result: dict[Any, Any] = copy.deepcopy(dict(raw))
    for text in overrides:
        key, sep, value_text = text.partition("=")
        key = key.strip()
        if not sep or not _OVERRIDE_KEY.match(key):
            raise ConfigError("--set", f"expected key=value with a dotted key (e.g. grid.d=[1, 2]), got {text!r}")
        value = parse_yaml(value_text, source=f"--set {key}")
        parts = key.split(".")
        target = result
        for depth, part in enumerate(parts[:-1]):
            node = target.get(part)
            if node is None:
                node = target[part] = {}
            elif not isinstance(node, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {key}", f"{where} is {describe(node)}, not a mapping")
            target = node
        target[parts[-1]] = value
    return result


def parse_yaml(text: str, source: str = "config", written_by_lin2net: bool = False) -> Any:
    """YAML text to plain data; a syntax error becomes a one-line ConfigError,
    as does text longer than :data:`MAX_CONFIG_BYTES` or holding more than
    :data:`MAX_YAML_VALUES` values (counted on the parser's events, before
    anything is built)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError("", f"{source} is longer than {MAX_CONFIG_BYTES // 1_000_000} MB; use linspace/geomspace")
    try:
        _check_value_count(text, source)
        loader = _GuardedLoader if written_by_lin2net else _Loader
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader
    except RecursionError:
        raise ConfigError("", f"malformed YAML in {source}: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise ConfigError("", f"malformed YAML in {source}: {clip(str(exc), 80)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        if "nesting depth" in problem:  # libyaml's own limit
            problem = "nested too deeply"
        raise ConfigError("", f"malformed YAML in {source}{where}: {problem}") from None


def _check_value_count(text: str, source: str) -> None:
    """ConfigError if ``text`` holds more than :data:`MAX_YAML_VALUES` values as
    written (scalars, lists, mappings; an alias counts once here, and
    :func:`_check_expanded_size` counts what it expands to)."""
    parser = _BaseLoader(text)
    count = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                count += 1
                if count > MAX_YAML_VALUES:
                    problem = f"holds more than {MAX_YAML_VALUES} values; write long axes as linspace/geomspace"
                    raise ConfigError("", f"{source} {problem}")
    finally:
        parser.dispose()


def parse_config(raw: Any, default_name: str = "sweep") -> SweepConfig:
    """Validate plain data (as loaded from YAML) into a :class:`SweepConfig`."""
    if raw is None:
        raise ConfigError("", "config is empty: it needs at least a grid with eta and lambda0")
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"config must be a mapping of keys to values, got {describe(raw)}")
    _reject_unknown(raw, top_level_keys(), prefix="")
    if "grid" not in raw:
        raise ConfigError("grid", "missing: the grid of eta and lambda0 values to sweep is required")
    settings = {**DEFAULTS, **raw}

    name = check_name(settings.get("name", default_name))
    model = families.parse_model(raw.get("model"))
    family = model["family"]
    if family != "shallow" and isinstance(settings["init"], Mapping):
        if list(settings["init"]) != ["explicit"]:
            keys = sorted(map(str, settings["init"]))
            raise ConfigError("init", f"a mapping init must be {{explicit: {{...}}}}, got keys {keys}")
        init, explicit = "explicit", None  # the family's explicit start: read by _parse_family
    else:
        init, explicit = _parse_init(settings["init"])
    trajectories = positive_int("trajectories", settings["trajectories"], maximum=MAX_TRAJECTORIES)
    if explicit is not None:
        if "trajectories" in raw and trajectories != 1:
            problem = f"explicit init is one initialization; omit it or use 1, got {trajectories}"
            raise ConfigError("trajectories", problem)
        trajectories = 1
    integrator = settings["integrator"]
    if integrator not in INTEGRATORS:
        raise ConfigError("integrator", f"must be one of {', '.join(INTEGRATORS)}, got {describe(integrator)}")
    algorithm = settings.get("algorithm", "gd")
    choices = user_algorithms()
    if not isinstance(algorithm, str) or algorithm not in choices:
        raise ConfigError("algorithm", f"must be one of {', '.join(choices)}, got {describe(algorithm)}")
    if family != "shallow":
        algorithm = family_entry(family, algorithm)
    max_steps = positive_int("max_steps", settings["max_steps"], maximum=MAX_STEPS)
    own = registry.get(algorithm)
    grid = raw["grid"] if isinstance(raw["grid"], Mapping) else {}
    if family != "shallow":
        _check_family_keys(family, own, raw, grid)
    for key, shown in [*((k, k) for k in raw), *((k, f"grid.{k}") for k in grid)]:
        owner = registry.owner_of(key)
        if owner is not None and owner != own.name and key not in own.config_keys and key not in own.axis_names:
            users = sorted(
                {str(e.extras["family"]) for e in registry.entries() if "family" in e.extras}
                & {str(e.extras.get("family")) for e in registry.entries() if key in (*e.config_keys, *e.axis_names)}
            )
            if users and registry.is_family(owner):
                raise ConfigError(shown, f"only used with model.family: {' or '.join(users)} (or remove it)")
            raise ConfigError(shown, f"only used with algorithm: {owner} (add algorithm: {owner}, or remove it)")
    sgd: dict[str, Any] = {}
    fixed: dict[str, int] = {}
    explicit_theta: families.ExplicitTheta | None = None
    if family != "shallow":
        sgd, fixed, explicit_theta = _parse_family(family, model, own, settings, raw, grid, max_steps)
        if explicit_theta is not None:
            init, explicit = "explicit", None
            if "trajectories" in raw and trajectories != 1:
                problem = f"explicit init is one initialization; omit it or use 1, got {trajectories}"
                raise ConfigError("trajectories", problem)
            trajectories = 1
    elif algorithm == "sgd":  # SGD's settings: its data set, sampling and window (SweepConfig's fields)
        sgd = _parse_sgd(settings, raw["grid"], max_steps)
    fixes = explicit if explicit is not None else explicit_theta
    axes, specs = _parse_grid(raw["grid"], fixes, sgd.get("data"), own, fixed)
    if family != "shallow" and explicit_theta is None:
        _check_family_size(family, axes)
    keep = settings.get("keep", "rows")
    if keep not in KEEP_CHOICES:
        hint = suggest(str(keep), KEEP_CHOICES)
        raise ConfigError("keep", f"must be one of {', '.join(KEEP_CHOICES)}, got {describe(keep)}{hint}")
    return SweepConfig(
        name=name,
        axes=axes,
        seed=integer("seed", settings["seed"], minimum=0, maximum=MAX_SEED),
        trajectories=trajectories,
        init=init,
        explicit=explicit,
        loss_tol=positive_float("loss_tol", settings["loss_tol"]),
        max_steps=max_steps,
        divergence_threshold=positive_float("divergence_threshold", settings["divergence_threshold"]),
        integrator=integrator,
        axis_specs=specs,
        algorithm=algorithm,
        keep=keep,
        family=family,
        explicit_theta=explicit_theta,
        **sgd,
    )


def user_algorithms() -> tuple[str, ...]:
    """The values ``algorithm:`` takes: the registry's entries that are not a family's."""
    return tuple(name for name in registry.names() if "family" not in registry.get(name).extras)


def family_entry(family: str, algorithm: str) -> str:
    """The registry entry that runs ``algorithm`` on model family ``family``."""
    runs = [e for e in registry.entries() if e.extras.get("family") == family]
    for entry in runs:
        if entry.extras.get("algorithm") == algorithm:
            return entry.name
    allowed = ", ".join(str(e.extras.get("algorithm")) for e in runs) or "nothing yet"
    raise ConfigError("algorithm", f"model.family: {family} runs with algorithm: {allowed}; got {algorithm}")


def _check_family_keys(family: str, own: registry.Entry, raw: Mapping[str, Any], grid: Mapping[str, Any]) -> None:
    """Keys a model family does not read, named before the generic owner check
    (whose message speaks of algorithms)."""
    if "depth" in grid and family != "deep":
        raise ConfigError("grid.depth", f"only for model.family: deep (this is family: {family})")
    if "inputs" in grid:
        raise ConfigError("grid.inputs", "the number of inputs is model.inputs (one value per sweep)")
    if "data" in raw and family not in families.DATA_FAMILIES:
        raise ConfigError("data", f"model.family: {family} has no data set (L = ½(f − Φ)²); remove data")
    for key in raw:
        owner = registry.owner_of(key)
        if owner is not None and key not in own.config_keys and key not in COMMON_KEYS:
            raise ConfigError(key, f"not used with model.family: {family}; remove it")
    for key in grid:
        if key not in own.axis_names and registry.owner_of(key) is not None:
            raise ConfigError(
                f"grid.{key}", f"not an axis of model.family: {family} with algorithm: {own.extras['algorithm']}"
            )


def _check_family_size(family: str, axes: Mapping[str, tuple[Any, ...]]) -> None:
    """D (parameters per trajectory) at most families.MAX_SIZE for every width and
    depth (deep's D grows as (N − 2)d²): refused before anything is allocated."""
    for d in axes.get("d", ()):
        for depth in axes.get("depth", (None,)):
            for inputs in axes.get("inputs", (None,)):
                size = families.parameter_count(family, int(d), depth=depth, inputs=inputs)
                if size > families.MAX_SIZE:
                    where = f"depth {depth}" if depth is not None else f"inputs {inputs}"
                    problem = (
                        f"d = {d} at {where} gives D = {size} parameters per trajectory; at most {families.MAX_SIZE}"
                    )
                    raise ConfigError("grid.d", problem)


def _parse_family(
    family: str,
    model: Mapping[str, Any],
    own: registry.Entry,
    settings: Mapping[str, Any],
    raw: Mapping[str, Any],
    grid: Mapping[str, Any],
    max_steps: int,
) -> tuple[dict[str, Any], dict[str, int], families.ExplicitTheta | None]:
    """A model family's settings: its data set, its fixed axes (depth, inputs) and
    its explicit start, checked against each other."""
    explicit_theta = None
    init_spec = settings.get("init")
    if isinstance(init_spec, Mapping) and list(init_spec) == ["explicit"]:
        explicit_theta = families.parse_explicit(family, init_spec["explicit"])
    fixed: dict[str, int] = {}
    if family == "deep":
        depth = model.get("depth")
        if explicit_theta is not None:
            if "depth" in grid:
                raise ConfigError("grid.depth", "explicit init fixes depth from its layers; remove grid.depth")
            if depth is not None and depth != explicit_theta.depth:
                problem = f"is {depth} but init.explicit.layers has {explicit_theta.depth} layers"
                raise ConfigError("model.depth", problem)
            depth = explicit_theta.depth
        if depth is not None and "depth" in grid:
            raise ConfigError("grid.depth", "give the depth once: model.depth or the axis grid.depth, not both")
        if depth is None and "depth" not in grid:
            raise ConfigError("model.depth", "missing: family: deep needs model.depth (an integer >= 2) or grid.depth")
        if depth is not None:
            fixed["depth"] = int(depth)
        return {}, fixed, explicit_theta
    inputs = model.get("inputs")
    if explicit_theta is not None:
        if inputs is not None and inputs != explicit_theta.inputs:
            problem = f"is {inputs} but the explicit start has {explicit_theta.inputs} inputs per neuron"
            raise ConfigError("model.inputs", problem)
        inputs = explicit_theta.inputs
    if inputs is None:
        raise ConfigError("model.inputs", f"missing: family: {family} needs model.inputs (an integer >= 1)")
    fixed["inputs"] = int(inputs)
    if "data" not in raw:
        raise ConfigError("data", f"missing: family: {family} fits a data set, e.g. data: {{n: 100, x: whitened}}")
    data = parse_family_data(raw["data"], int(inputs))
    out: dict[str, Any] = {"data": data}
    if own.extras.get("algorithm") == "sgd":
        if max_steps > MAX_SGD_STEPS:
            raise ConfigError(
                "max_steps", f"must be at most {MAX_SGD_STEPS} (2^46) with algorithm: sgd, got {max_steps}"
            )
        if "batch_size" not in grid:
            raise ConfigError("grid.batch_size", "missing: give the mini-batch size axis (1 to data.n)")
    return out, fixed, explicit_theta


def _parse_sgd(settings: Mapping[str, Any], grid: Any, max_steps: int) -> dict[str, Any]:
    """The SGD keys (data, sampling, window) of a config with algorithm: sgd."""
    data = _parse_data(settings.get("data", {}))
    sampling = settings.get("sampling", "without_replacement")
    if sampling not in SAMPLINGS:
        hint = suggest(str(sampling), SAMPLINGS)
        raise ConfigError("sampling", f"must be one of {', '.join(SAMPLINGS)}, got {describe(sampling)}{hint}")
    if "window" in settings:
        window = positive_int("window", settings["window"])
        if window > max_steps:
            raise ConfigError("window", f"must be at most max_steps = {max_steps}, got {window}")
    else:
        window = min(DEFAULT_WINDOW, max_steps)
    if max_steps > MAX_SGD_STEPS:
        raise ConfigError("max_steps", f"must be at most {MAX_SGD_STEPS} (2^46) with algorithm: sgd, got {max_steps}")
    if isinstance(grid, Mapping) and "batch_size" not in grid:
        raise ConfigError("grid.batch_size", f"missing: give the mini-batch size axis (1 to data.n = {data.n})")
    return {"data": data, "sampling": sampling, "window": window}


def _parse_data(spec: Any) -> DataSpec:
    """``data: {n, x: gaussian | ones | [x_1, …], noise}``; an explicit x fixes n."""
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ConfigError("data", f"must be a mapping with keys {', '.join(DATA_KEYS)}, got {describe(spec)}")
    _reject_unknown(spec, DATA_KEYS, prefix="data.")
    x = spec.get("x", "gaussian")
    if isinstance(x, str):
        if x not in DATA_X_KINDS:
            kinds = ", ".join(DATA_X_KINDS)
            raise ConfigError("data.x", f"must be {kinds} or a list of numbers, got {x!r}{suggest(x, DATA_X_KINDS)}")
        n = positive_int("data.n", spec.get("n", DataSpec.n), maximum=MAX_DATA)
        values: str | tuple[float, ...] = x
    elif isinstance(x, Sequence) and len(x) > 0:
        values = tuple(finite_float(f"data.x[{i}]", v) for i, v in enumerate(x))
        if len(values) > MAX_DATA:
            raise ConfigError("data.x", f"at most {MAX_DATA} values, got {len(values)}")
        if not any(values):
            raise ConfigError("data.x", "all values are 0: the data cannot be normalized to mean x² = 1")
        n = len(values)
        if "n" in spec and positive_int("data.n", spec["n"]) != n:
            problem = f"an explicit data.x has {n} values; omit data.n or give {n}, got {spec['n']!r}"
            raise ConfigError("data.n", problem)
    else:
        raise ConfigError("data.x", f"must be gaussian, ones or a non-empty list of numbers, got {describe(x)}")
    noise = finite_float("data.noise", spec.get("noise", 0.0))
    if noise < 0:
        raise ConfigError("data.noise", f"must be >= 0, got {noise!r}")
    return DataSpec(n=n, x=values, noise=noise)


def _parse_grid(
    grid: Any,
    explicit: ExplicitInit | families.ExplicitTheta | None,
    data: Any = None,
    own: registry.Entry | None = None,
    fixed: Mapping[str, int] | None = None,
) -> tuple[dict[str, tuple[Any, ...]], dict[str, Any]]:
    """The grid's axes expanded (``fixed``: a family's depth or inputs given in
    ``model:`` or by an explicit start, each a one-value axis)."""
    if not isinstance(grid, Mapping):
        raise ConfigError("grid", f"must be a mapping of axis names to values, got {describe(grid)}")
    _reject_unknown(grid, registry.grid_keys(), prefix="grid.")
    if "eta" in grid and "eta_lambda0" in grid:
        raise ConfigError("grid.eta_lambda0", "give either grid.eta or grid.eta_lambda0, not both")
    if "eta" not in grid and "eta_lambda0" not in grid:
        raise ConfigError("grid.eta", "missing: give the stepsize axis grid.eta (or grid.eta_lambda0)")
    if explicit is not None:
        for key in ("lambda0", "d"):
            if key in grid:
                raise ConfigError(f"grid.{key}", f"explicit init fixes {key} from the vectors; remove grid.{key}")
    elif "lambda0" not in grid:
        raise ConfigError("grid.lambda0", "missing: give the initial-scale axis grid.lambda0")

    # An explicit init fixes d (and lambda0) from its vectors; the target phi keeps its default.
    defaults = {"phi": GRID_DEFAULTS["phi"]} if explicit is not None else GRID_DEFAULTS
    own_axes = own.axis_names if own is not None else ()
    noise_default = {"label_noise": 0.0} if data and "label_noise" in own_axes else {}
    specs = {**defaults, **noise_default, **grid, **(fixed or {})}
    axes: dict[str, tuple[Any, ...]] = {}
    keys = registry.grid_keys() if own is None else (*(axis.name for axis in registry.COMMON_AXES), *own_axes)
    for key in keys:
        if key not in specs:
            continue
        values = _expand_axis(f"grid.{key}", specs[key])
        if key == "d":
            axes[key] = _integer_axis(f"grid.{key}", values, from_range=isinstance(specs[key], Mapping))
        elif registry.axis(key).dtype is int:
            axes[key] = _integer_axis(f"grid.{key}", values, from_range=isinstance(specs[key], Mapping))
            least = registry.axis(key).minimum
            for size in axes[key]:
                if size < least:
                    raise ConfigError(f"grid.{key}", f"must be an integer >= {least:g}, got {size}")
                if key == "depth" and size > families.MAX_DEPTH:
                    raise ConfigError("grid.depth", f"must be at most {families.MAX_DEPTH}, got {size}")
            limit = getattr(data, "n", None) if key == "batch_size" else None  # SGD: a batch is at most the data
            for size in axes[key] if limit is not None else ():
                if size > limit:
                    raise ConfigError("grid.batch_size", f"must be at most data.n = {limit}, got {size}")
        else:
            allow_zero = registry.axis(key).allow_zero
            for value in values:
                if value < 0 or (value == 0 and not allow_zero):
                    raise ConfigError(f"grid.{key}", f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
                if value > MAX_PARAMETER:
                    raise ConfigError(f"grid.{key}", f"must be at most {MAX_PARAMETER:g}, got {value!r}")
            axes[key] = tuple(values)
        duplicate = _first_duplicate(axes[key])
        if duplicate is not None:
            raise ConfigError(f"grid.{key}", f"duplicate value {duplicate!r}: every axis value must be distinct")
    if "eta_lambda0" in axes and "lambda0" in axes:
        _check_derived_eta(axes["eta_lambda0"], axes["lambda0"])
    if explicit is not None and "eta_lambda0" in axes:
        _check_derived_eta(axes["eta_lambda0"], (explicit.lambda0,))
    cells = math.prod(len(values) for values in axes.values())
    if cells > MAX_CELLS:
        sizes = " x ".join(f"{len(values)} {key}" for key, values in axes.items() if len(values) > 1)
        raise ConfigError("grid", f"{sizes} = {cells} cells; a sweep runs at most {MAX_CELLS}")
    return axes, dict(specs)


def _first_duplicate(values: Sequence[Any]) -> Any:
    """The smallest value that occurs twice in ``values`` (None if all are
    distinct), in time linear in their number (a set, not ``count`` per value)."""
    seen: set[Any] = set()
    repeated: set[Any] = set()
    for value in values:
        (repeated if value in seen else seen).add(value)
    return min(repeated) if repeated else None


def _check_derived_eta(products: Sequence[float], lambda0s: Sequence[float]) -> None:
    """η = (η·λ0)/λ0 per cell meets the checks of a given η: finite, > 0, at most MAX_PARAMETER."""
    with np.errstate(over="ignore", under="ignore"):
        eta = np.divide.outer(np.asarray(products, dtype=np.float64), np.asarray(lambda0s, dtype=np.float64))
    bad = ~(np.isfinite(eta) & (eta > 0) & (eta <= MAX_PARAMETER))
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        problem = f"eta = {products[i]!r}/{lambda0s[j]!r} = {float(eta[i, j])!r} at lambda0 = {lambda0s[j]!r}"
        raise ConfigError("grid.eta_lambda0", f"{problem}; the derived eta must be > 0 and at most {MAX_PARAMETER:g}")


def _expand_axis(key: str, spec: Any) -> list[float]:
    if isinstance(spec, Mapping):
        if len(spec) != 1 or next(iter(spec)) not in AXIS_FORMS:
            forms = ", ".join(f"{{{form}: [start, stop, num]}}" for form in AXIS_FORMS)
            raise ConfigError(key, f"an axis mapping must be one of {forms}, got keys {sorted(map(str, spec))}")
        form, args = next(iter(spec.items()))
        sub = f"{key}.{form}"
        if not isinstance(args, Sequence) or isinstance(args, str) or len(args) != 3:
            raise ConfigError(sub, f"must be a list [start, stop, num], got {describe(args)}")
        start = finite_float(f"{sub}[0] (start)", args[0])
        stop = finite_float(f"{sub}[1] (stop)", args[1])
        num = positive_int(f"{sub}[2] (num)", args[2], maximum=MAX_AXIS_VALUES)
        if form == "geomspace":
            for label, value in (("start", start), ("stop", stop)):
                if value <= 0:
                    raise ConfigError(sub, f"geomspace {label} must be > 0, got {value!r}")
            values = np.geomspace(start, stop, num)
        else:
            values = np.linspace(start, stop, num)
        return [float(v) for v in values]
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        if len(spec) == 0:
            raise ConfigError(key, "empty axis: give at least one value")
        return [finite_float(f"{key}[{i}]", value) for i, value in enumerate(spec)]
    return [finite_float(key, spec)]


def _integer_axis(key: str, values: list[float], from_range: bool) -> tuple[int, ...]:
    """Widths are positive integers. Listed values must be integers; values from
    linspace/geomspace are rounded to the nearest integer and deduplicated."""
    out: list[int] = []
    for value in values:
        if value < 1 or (not from_range and not value.is_integer()):
            raise ConfigError(key, f"must be a positive integer, got {value!r}")
        if value > MAX_D:
            raise ConfigError(key, f"must be at most {MAX_D}, got {value!r}")
        out.append(int(round(value)))
    return tuple(dict.fromkeys(out)) if from_range else tuple(out)


def _parse_init(spec: Any) -> tuple[str, ExplicitInit | None]:
    if isinstance(spec, str):
        if spec == "explicit":
            raise ConfigError("init", "explicit init needs vectors: init: {explicit: {a: [...], b: [...]}}")
        if spec not in INIT_KINDS:
            choices = ", ".join(INIT_KINDS)
            raise ConfigError("init", f"must be one of {choices}, got {spec!r}{suggest(spec, INIT_KINDS)}")
        return spec, None
    if isinstance(spec, Mapping):
        if list(spec) != ["explicit"]:
            keys = sorted(map(str, spec))
            raise ConfigError("init", f"a mapping init must be {{explicit: {{a: [...], b: [...]}}}}, got keys {keys}")
        vectors = spec["explicit"]
        if not isinstance(vectors, Mapping) or set(vectors) != {"a", "b"}:
            problem = f"must be a mapping with exactly the keys a and b, got {describe(vectors)}"
            raise ConfigError("init.explicit", problem)
        parsed = {}
        for name in ("a", "b"):
            vec = vectors[name]
            if not isinstance(vec, Sequence) or isinstance(vec, str) or len(vec) == 0:
                raise ConfigError(f"init.explicit.{name}", f"must be a non-empty list of numbers, got {describe(vec)}")
            parsed[name] = tuple(finite_float(f"init.explicit.{name}[{i}]", v) for i, v in enumerate(vec))
        if len(parsed["a"]) != len(parsed["b"]):
            lengths = f"{len(parsed['a'])} and {len(parsed['b'])}"
            raise ConfigError("init.explicit", f"a and b must have the same length, got {lengths}")
        explicit = ExplicitInit(parsed["a"], parsed["b"])
        if not explicit.lambda0 <= MAX_PARAMETER:
            problem = f"|a|² + |b|² must be at most {MAX_PARAMETER:g}, got {explicit.lambda0!r}"
            raise ConfigError("init.explicit", problem)
        if explicit.lambda0 == 0:
            raise ConfigError("init.explicit", "a = b = 0 is the saddle point: gradient descent never moves from it")
        return "explicit", explicit
    raise ConfigError("init", f"must be one of {', '.join(INIT_KINDS)}, got {describe(spec)}")


def _reject_unknown(mapping: Mapping[Any, Any], allowed: Sequence[str], prefix: str) -> None:
    def misplaced_axis(key: str) -> str | None:
        if not prefix and key in GRID_KEYS:  # an axis written at the top level
            return f" at the top level; it is an axis: write it under grid: as grid.{key}"
        return None

    reject_unknown(mapping, allowed, prefix, misplaced_axis)
