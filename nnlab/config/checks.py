"""The checks run on a composed config before anything is built or opened.

A group option's parameters are checked against the signature of what it builds (a model's or
data set's constructor, an init function, a loss or optimizer class, Lightning's Trainer, a
callback), nnlab's own keys against the schema, and every range in RANGES. `validate` also fills
in the defaults a run will use, so the logged params are the values used.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import math
import os
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict

from nnlab.config.schema import (
    ACCELERATORS,
    CALLBACK_RANGES,
    GROUPS,
    INT64,
    NON_FINITE_ALLOWED,
    PRECISIONS,
    RANGES,
    TOP_LEVEL,
    TRAINER_OWNED,
    plain,
)
from nnlab.errors import ConfigError


def fail(key: str, value: Any, why: str, choices: Any) -> typing.NoReturn:
    raise ConfigError(f"{key}={value!r} is invalid: {why}. Valid: {choices}.")


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


# -- parameters from signatures ------------------------------------------------------------------
@dataclass
class Signature:
    """The keyword parameters something takes: name -> (type hint, default); `open` when it
    also takes **kwargs it does not pass on to a known signature."""

    params: dict[str, tuple[Any, Any]]
    open: bool
    owner: str


FRAMEWORK = ("torch.", "lightning.", "pytorch_lightning.", "builtins")


def signature(target: Callable, skip: int = 0, hide: Sequence[str] = ()) -> Signature:
    """A function's or class's keyword parameters, following **kwargs up the class's bases.

    **kwargs that a user's or nnlab's class hands on to a framework base (nn.Module,
    LightningDataModule, object) take nothing more, so unknown keys there are refused."""
    functions: list[Any] = [target]
    if inspect.isclass(target):
        functions = [c.__dict__["__init__"] for c in target.__mro__ if "__init__" in c.__dict__]
    own_framework = getattr(target, "__module__", "").startswith(FRAMEWORK)
    params: dict[str, tuple[Any, Any]] = {}
    is_open = False
    for position, function in enumerate(functions):
        module = getattr(function, "__module__", None) or "builtins"
        if position > 0 and module.startswith(FRAMEWORK) and not own_framework:
            is_open = False
            break
        try:
            listed = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            is_open = True  # cannot tell: accept what it is given
            break
        try:
            hints = typing.get_type_hints(function)
        except Exception:
            hints = {}
        if inspect.isclass(target) and listed and listed[0].name == "self":
            listed = listed[1:]
        if position == 0:
            listed = listed[skip:]
        is_open = any(p.kind is p.VAR_KEYWORD for p in listed)
        for p in listed:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in hide:
                default = MISSING if p.default is p.empty else p.default
                params.setdefault(p.name, (hints.get(p.name, Any), default))
        if not is_open:
            break
    name = getattr(target, "__qualname__", str(target))
    return Signature(params, is_open, f"{getattr(target, '__module__', '')}.{name}")


def matches(value: Any, hint: Any) -> bool | None:
    """Whether `value` fits the type `hint`: True, False, or None where it cannot tell."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        results = [matches(value, a) for a in args]
        return True if True in results else (None if None in results else False)
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple | ListConfig):
            return False
        if args and args[-1] is not Ellipsis:
            inner = [matches(v, args[0]) for v in value]
            return False if False in inner else (None if None in inner else True)
        return True
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict,):
        return isinstance(value, dict | DictConfig)
    return None


def describe_hint(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(describe_hint(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    name = getattr(origin or hint, "__name__", None) or str(hint).replace("typing.", "")
    args = typing.get_args(hint)
    return f"{name}[{', '.join(describe_hint(a) for a in args)}]" if args else name


def check_params(group: str, node: Mapping[str, Any], sig: Signature,
                 own: Sequence[str] = ("name", "_target_", "_partial_")) -> dict[str, Any]:
    """Refuse unknown keys and values of the wrong type; return the defaults to fill in."""
    label = f"{group}={node['name']} ({sig.owner})" if "name" in node else sig.owner
    for key, value in node.items():
        if key in own:
            continue
        if key not in sig.params:
            if sig.open:
                continue
            valid = sorted(sig.params)
            raise ConfigError(
                f"{group}.{key}={value!r} is invalid: {label} has no parameter "
                f"'{key}'.{did_you_mean(key, valid)} Valid: {valid}.")
        hint = sig.params[key][0]
        if matches(value, hint) is False:
            fail(f"{group}.{key}", value, f"{sig.owner} takes {key} as {describe_hint(hint)}",
                 describe_hint(hint))
    return {k: d for k, (_, d) in sig.params.items()
            if k not in node and isinstance(d, bool | int | float | str) and d is not MISSING}


# -- the checks ----------------------------------------------------------------------------------
def _import(node: Mapping[str, Any], group: str) -> Any:
    from hydra.utils import get_class, get_method

    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{group}={node.get('name')!r} has no _target_: its yaml must name the "
                          f"class to build (e.g. _target_: mypkg.nets.MyNet).")
    try:
        return get_class(target)
    except Exception:
        try:
            return get_method(target)
        except Exception as err:
            raise ConfigError(f"{group}._target_={target!r} cannot be imported ({err}). It must "
                              "name a class importable from where you run nnlab (e.g. "
                              "nnlab.models.mlp.MLP, or your package on PYTHONPATH).") from None


def group_signature(cfg: DictConfig, group: str) -> tuple[Signature, tuple[str, ...]]:
    """What a group's node is checked against, and the keys nnlab itself reads from it."""
    # lazy: the parts load torch; nnlab.config stays torch-free
    from nnlab.activations import describe
    from nnlab.inits import INIT_NAMES, WEIGHT_INITS
    from nnlab.losses import LOSSES

    node = cfg[group]
    name = node.get("name")
    own: tuple[str, ...] = ("name", "_target_", "_partial_")
    if group == "model":
        return signature(_import(node, group), skip=3), own
    if group == "dataset":
        return signature(_import(node, group), hide=("batch_size", "seed")), own
    if group == "activation":
        try:
            spec = describe(str(name), node.get("_target_"))
        except KeyError:
            # lazy: the parts load torch; nnlab.config stays torch-free
            from nnlab.activations import ACTIVATIONS

            fail("activation.name", name, "unknown activation (or give a _target_ class)",
                 sorted(ACTIVATIONS))
        except Exception as err:
            raise ConfigError(f"activation._target_={node.get('_target_')!r} cannot be imported "
                              f"({err}).") from None
        return signature(spec.module), own
    if group == "init":
        if name not in INIT_NAMES:
            fail("init.name", name, "unknown initialisation", INIT_NAMES)
        if name == "default":
            return Signature({}, False, "PyTorch's own init"), (*own, "bias")
        return signature(WEIGHT_INITS[name], skip=2), (*own, "bias")
    if group == "loss":
        if name not in LOSSES:
            fail("loss.name", name, "unknown loss", sorted(LOSSES))
        return signature(LOSSES[name].build), own
    if group in ("optimizer", "scheduler"):
        if group == "scheduler" and not node.get("_target_"):
            return Signature({}, False, "no scheduler"), own
        return signature(_import(node, group), skip=1), own
    return Signature({}, True, group), own


def _check_group(cfg: DictConfig, group: str) -> None:
    node = cfg.get(group)
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{group}={node!r} is invalid: '{group}' is a config group; choose an "
                          f"option with {group}=<option> (python -m nnlab --help lists them).")
    if group == "accelerator":
        return _check_accelerator(node)
    sig, own = group_signature(cfg, group)
    defaults = check_params(group, plain(node), sig, own)
    with open_dict(node):
        node.update(defaults)


def _check_accelerator(node: DictConfig) -> None:
    known = ("name", "accelerator", "devices", "precision", "strategy")
    for key in node:
        if key not in known:
            raise ConfigError(f"accelerator.{key} is invalid: the accelerator group has no key "
                              f"'{key}'.{did_you_mean(str(key), known)} Valid: {list(known)}.")
    if str(node.accelerator) not in ACCELERATORS:
        fail("accelerator.accelerator", node.accelerator, "unknown accelerator", ACCELERATORS)
    if str(node.precision) not in PRECISIONS:
        fail("accelerator.precision", node.precision, "unknown precision", list(PRECISIONS))
    if str(node.precision).startswith("16") and not _runs_on_cuda(str(node.accelerator)):
        fail("accelerator.precision", str(node.precision), "float16 needs a CUDA GPU and this run "
             "is on the CPU (Lightning would quietly train in bfloat16 instead)",
             "on a CPU: 32, 64, bf16-mixed or bf16-true")
    from lightning.pytorch.strategies import StrategyRegistry

    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if str(node.get("strategy", "auto")) not in strategies:
        fail("accelerator.strategy", node.strategy, "unknown Lightning strategy", strategies)


def _runs_on_cuda(accelerator: str) -> bool:
    """Whether `accelerator` puts the run on a CUDA GPU (auto: when one is visible)."""
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator != "auto":
        return False
    import torch  # lazy: only a 16-bit precision asks

    return torch.cuda.is_available()


def _check_lightning(cfg: DictConfig) -> None:
    """trainer flags against Lightning's Trainer; callbacks and loggers against their class."""
    import lightning.pytorch as pl

    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        raise ConfigError("trainer is invalid: it must be a mapping of Lightning Trainer flags "
                          "(conf/trainer/default.yaml), e.g. trainer.max_epochs=5.")
    for key in trainer:
        if key in TRAINER_OWNED:
            raise ConfigError(f"trainer.{key} is invalid: nnlab sets the Trainer's {key} "
                              f"itself. Set {TRAINER_OWNED[key]} instead.")
    check_params("trainer", plain(trainer), signature(pl.Trainer), own=())
    for group in ("callbacks", "logger"):
        node = cfg.get(group)
        if node is None:
            continue
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{group}={node!r} is invalid: it maps names to objects, e.g. "
                              f"+{group}.mine._target_=<class>.")
        for name, item in node.items():
            if item is None:
                continue
            if not isinstance(item, DictConfig) or "_target_" not in item:
                raise ConfigError(f"{group}.{name} is invalid: each entry needs a _target_ "
                                  f"naming its class, e.g. +{group}.{name}._target_=<class>.")
            check_params(f"{group}.{name}", plain(item),
                         signature(_import(item, f"{group}.{name}")))
            for key, (test, valid) in CALLBACK_RANGES.items():
                if group == "callbacks" and item.get(key) is not None:
                    _check_range(f"{group}.{name}.{key}", plain(item[key]), test, valid)


def users_own(node: Any) -> bool:
    """Whether a group's option builds the user's own class (its ranges are not nnlab's)."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    return bool(target) and str(target).split(".")[0] not in ("nnlab", "torch", "lightning")


def _check_range(key: str, value: Any, test: Callable[[Any], bool], valid: str) -> None:
    try:
        ok = test(value)
    except TypeError:
        ok = False
    if not ok:
        fail(key, value, "out of range", valid)


def _check_ranges(cfg: DictConfig, prefix: str = "") -> None:
    """Every RANGES key under `prefix` that the config holds ("hydra." ones: see check_launch)."""
    for key, (test, valid) in RANGES.items():
        if not key.startswith(prefix) or (not prefix and key.startswith("hydra.")):
            continue
        value = OmegaConf.select(cfg, key, default=MISSING)
        if value is MISSING or users_own(cfg.get(key.split(".")[0])):
            continue
        _check_range(key, plain(value), test, valid)


def _check_numbers(node: Any, key: str = "") -> None:
    """Every float finite (unless NON_FINITE_ALLOWED says otherwise), every integer an int64."""
    if isinstance(node, Mapping):
        for name, value in node.items():
            _check_numbers(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list | tuple):
        for value in node:
            _check_numbers(value, key)
    elif isinstance(node, float) and not math.isfinite(node):
        if not any(fnmatch.fnmatch(key, pattern) for pattern in NON_FINITE_ALLOWED):
            fail(key, node, "a number here must be finite (inf and nan cannot train)",
                 "a finite number; see python -m nnlab --help for each key's range")
    elif isinstance(node, int) and not isinstance(node, bool) and \
            not INT64[0] <= node <= INT64[1]:
        fail(key, node, "too large for the 64-bit integers torch and numpy compute with",
             f"an integer in [{INT64[0]}, {INT64[1]}]")


def creatable(path: str | os.PathLike[str]) -> str | None:
    """None when folder `path` exists as a writable folder or can be created; else why not. The
    nearest existing folder is probed by making and removing an empty folder in it (os.access
    says yes to root on read-only mounts and on /proc)."""
    import tempfile

    path = os.path.abspath(path)
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"{probe} is a file, so no folder can be made under it"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nnlab-probe-", dir=probe))
    except OSError as err:
        what = "cannot be written" if probe == path else f"cannot be created in {probe}"
        return f"{path} {what} ({err.strerror})"
    return None


def check_launch(cfg: DictConfig, multirun: bool) -> None:
    """Before Hydra makes any folder or launches a job (nnlab.config.launch.CheckLaunch): the
    launcher's own parameters and the run or sweep folder."""
    _check_ranges(cfg, prefix="hydra.")
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = OmegaConf.select(cfg, key, default=None)
    why = creatable(str(folder)) if folder else None
    if why:
        raise ConfigError(f"{key}={folder} is invalid: nnlab keeps each run's folder (its "
                          f"checkpoint, Hydra's config) there, and {why}. Run from a writable "
                          f"folder, or set {key}=<a writable folder>.")


def _check_top_level(cfg: DictConfig) -> None:
    for key in cfg:
        if key not in TOP_LEVEL and key != "hydra":
            raise ConfigError(
                f"{key} is invalid: nnlab reads no top-level key '{key}'."
                f"{did_you_mean(str(key), TOP_LEVEL)} Valid: {sorted(TOP_LEVEL)}; a config "
                "group's option is chosen with group=option (no '+').")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for anything that cannot run, and fill in the defaults each group's
    option will use; touches no tracker and no data."""
    _check_top_level(cfg)
    _check_numbers(plain(cfg))
    for group in GROUPS:
        _check_group(cfg, group)
    _check_lightning(cfg)
    _check_ranges(cfg)
    init = cfg.init
    if init.get("a") is not None and init.get("b") is not None and init.a >= init.b:
        fail("init.a", init.a, f"a uniform draw needs a < b (b={init.b})", "a < b")
    # lazy: the parts load torch; nnlab.config stays torch-free
    from nnlab.inits import BIAS_INITS

    if init.get("bias", "zeros") not in BIAS_INITS:
        fail("init.bias", init.bias, "unknown bias initialisation", sorted(BIAS_INITS))
    _check_fit(cfg)


def _check_fit(cfg: DictConfig) -> None:
    """Model vs data vs loss vs machine."""
    # lazy: the parts load torch; nnlab.config stays torch-free
    from nnlab.losses import LOSSES

    data_cls = _import(cfg.dataset, "dataset")
    model_cls = _import(cfg.model, "model")
    task = getattr(data_cls, "task", "classification")
    if getattr(model_cls, "needs_image", False) and not getattr(data_cls, "is_image", True):
        fail("model", cfg.model.name,
             f"it is a CNN and needs image inputs (C, H, W), but dataset={cfg.dataset.name} "
             "has flat feature vectors", "model=mlp for this data set, or an image data set "
             "(digits, mnist, fashion_mnist) for a CNN")
    loss_tasks = LOSSES[cfg.loss.name].tasks
    if task not in loss_tasks:
        fitting = sorted(name for name, spec in LOSSES.items() if task in spec.tasks)
        fail("loss", cfg.loss.name, f"it is a {'/'.join(loss_tasks)} loss and "
             f"dataset={cfg.dataset.name} is a {task} task", f"for {task}: {fitting}")
    if str(cfg.accelerator.accelerator) in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            fail("accelerator", cfg.accelerator.name, "no CUDA GPU is visible on this machine",
                 "accelerator=cpu or accelerator=auto (uses a GPU when there is one)")


