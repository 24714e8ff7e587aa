"""User models: "path/to/file.py:factory" or "package.module:factory" (see models/README.md)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from models.errors import ModelSpecError
from models.split_model import SplitModel, eval_mode, module_name

USER_FORMS = "path/to/file.py:factory or package.module:factory"


def is_user_spec(name: str) -> bool:
    """Whether `name` names a user model rather than a zoo model."""
    return ":" in name


def build_user_model(
    spec: str, input_shape: tuple[int, int, int], num_classes: int, **kwargs: Any
) -> SplitModel:
    """Load the factory named by `spec`, call it, and cut what it returns into blocks."""
    source, factory = _load_factory(spec)
    params = _signature_params(factory)
    call_kwargs = dict(kwargs)
    takes_shape = _accepts(params, "input_shape")
    takes_classes = _accepts(params, "num_classes")
    if takes_shape:
        call_kwargs["input_shape"] = tuple(input_shape)
    if takes_classes:
        call_kwargs["num_classes"] = num_classes
    unknown = [key for key in kwargs if not _accepts(params, key)]
    if unknown:
        raise ModelSpecError(
            f"user model {spec} does not take option(s) {', '.join(unknown)}: "
            f"its factory takes ({', '.join(params) if params else 'no arguments'})"
        )
    try:
        built = factory(**call_kwargs)
    except Exception as exc:
        raise ModelSpecError(f"user model {spec}: the factory failed: {_one_line(exc)}") from exc

    blocks = _blocks_of(built, spec)
    num_classes = _check_forward(spec, blocks, tuple(input_shape), num_classes, takes_classes)
    return SplitModel(
        name=spec,
        blocks=blocks,
        input_shape=tuple(input_shape),  # type: ignore[arg-type]
        num_classes=num_classes,
        spec={
            "model": spec,
            "source": source,
            "input_shape": list(input_shape),
            "num_classes": num_classes,
            **kwargs,
        },
    )


def _load_factory(spec: str) -> tuple[str, Callable[..., Any]]:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelSpecError(f"bad user model spec {spec!r}: expected {USER_FORMS}")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ModelSpecError(f"user model file not found: {target} (from {spec!r})")
        source, module = str(path), _import_file(path)
    else:
        source = target
        try:
            module = _import_module(target)
        except ImportError as exc:
            raise ModelSpecError(
                f"cannot import module {target!r} for user model {spec!r}: {_one_line(exc)}: "
                "install it, or run where its package is in the working directory (an export "
                "from there carries it in the bundle)"
            ) from exc
        except Exception as exc:
            raise ModelSpecError(f"importing {target!r} failed: {_one_line(exc)}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        found = sorted(
            name
            for name, value in vars(module).items()
            if callable(value)
            and not name.startswith("_")
            and getattr(value, "__module__", None) == module.__name__
        )
        problem = f"no factory {attr!r}" if factory is None else f"{attr!r}, but it is not callable"
        raise ModelSpecError(
            f"user model {spec!r}: {source} has {problem} "
            f"(callables defined there: {', '.join(found) or 'none'})"
        )
    return source, factory


def _import_module(name: str) -> ModuleType:
    """Import `name`; a top-level package that is not on sys.path is looked for in the working
    directory too. `hostctl` and `edge-runtime` run as console scripts, whose sys.path lacks
    the working directory that `python -m` puts there, so `mypkg.net:factory` beside the user
    was "No module named 'mypkg'". Appended, not prepended: it shadows no installed package."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = str(Path.cwd())
        if exc.name != name.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(name)


def _import_file(path: Path) -> ModuleType:
    # The file's own folder goes first on sys.path, as `python file.py` would put it: the
    # factory's `import blocks` finds blocks.py beside it (on the host and in a bundle's code/).
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # A name unique to the file, so two user files named model.py do not collide.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"hiertrain_user_{path.stem}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModelSpecError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModelSpecError(f"loading user model file {path} failed: {_one_line(exc)}") from exc
    return module


# Our own packages are installed on the board; a user file beside them must not ship copies.
_OWN_PACKAGES = {"models", "host", "edge_runtime", "tests"}


def local_modules(source: Path) -> list[Path]:
    """Modules imported so far from the folder of the user model file `source`, as the files or
    top-level package directories to ship with it (the file itself excluded)."""
    folder = Path(source).resolve().parent
    found: set[Path] = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        try:
            rel = Path(file).resolve().relative_to(folder)
        except ValueError:
            continue
        top = rel.parts[0]
        if module.__name__.split(".")[0] != top.removesuffix(".py"):
            continue  # not imported through the folder on sys.path (another user file, say)
        if top in _OWN_PACKAGES or top == Path(source).name or top.startswith("."):
            continue
        if "site-packages" in rel.parts or "dist-packages" in rel.parts:
            continue  # a virtual environment inside the user's folder
        found.add(folder / top)
    return sorted(found)


def working_dir_package(spec: str) -> Path | None:
    """For a `package.module:factory` spec whose top-level package (or module file) was
    imported from the working directory, that directory or file: it goes into the bundle, as
    a file model's folder does, since it is installed nowhere the bundle will be loaded. None
    for a file spec, an installed package or one of ours. Call it after the model is built."""
    target = spec.rpartition(":")[0]
    if target.endswith(".py") or "/" in target or "\\" in target:
        return None
    top = target.split(".")[0]
    module = sys.modules.get(top)
    if module is None or top in _OWN_PACKAGES:
        return None
    file = getattr(module, "__file__", None)
    if file:
        path = Path(file).resolve()
        path = path.parent if path.name == "__init__.py" else path
    else:  # a namespace package: a directory without __init__.py
        path = Path(next(iter(getattr(module, "__path__", [])), "")).resolve()
    return path if path.parent == Path.cwd().resolve() else None


def _signature_params(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return {}


def _accepts(params: dict[str, inspect.Parameter], name: str) -> bool:
    if name in params and params[name].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.VAR_POSITIONAL,
    ):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _blocks_of(built: Any, spec: str) -> list[tuple[str, nn.Module]]:
    expected = (
        "an nn.Sequential, or a module with a `blocks` attribute "
        "(nn.Sequential, nn.ModuleDict or list of (name, module))"
    )
    if isinstance(built, nn.Sequential):
        raw: Any = list(built.named_children())
    elif isinstance(built, nn.Module) and hasattr(built, "blocks"):
        raw = built.blocks
        if isinstance(raw, (nn.Sequential, nn.ModuleDict)):
            raw = (
                list(raw.named_children()) if isinstance(raw, nn.Sequential) else list(raw.items())
            )
        elif not isinstance(raw, (list, tuple)):
            raise ModelSpecError(
                f"user model {spec}: `blocks` is a {type(raw).__name__}; expected {expected}"
            )
    else:
        raise ModelSpecError(
            f"user model {spec}: the factory returned a {type(built).__name__}; expected {expected}"
        )

    blocks: list[tuple[str, nn.Module]] = []
    for item in raw:
        if not (
            isinstance(item, (tuple, list))
            and len(item) == 2
            and isinstance(item[0], str)
            and item[0]
            and isinstance(item[1], nn.Module)
        ):
            raise ModelSpecError(
                f"user model {spec}: block {item!r:.60} is not a (name, nn.Module) pair; expected {expected}"
            )
        blocks.append((item[0], item[1]))
    safe = [module_name(name) for name, _ in blocks]
    if len(set(safe)) != len(safe):
        raise ModelSpecError(
            f"user model {spec}: block names must be unique (with '.' read as '_'): {', '.join(safe)}"
        )
    if len(blocks) < 2:
        raise ModelSpecError(
            f"user model {spec} has {len(blocks)} block(s): at least 2 are needed to split it"
        )
    return blocks


def _check_forward(
    spec: str,
    blocks: list[tuple[str, nn.Module]],
    input_shape: tuple[int, ...],
    num_classes: int,
    takes_classes: bool,
) -> int:
    """Run the blocks once on a batch of 1; return the class count the classifier gives."""
    x = torch.zeros(1, *input_shape)
    for name, block in blocks:
        try:
            with eval_mode(block), torch.no_grad():
                x = block(x)
        except Exception as exc:
            raise ModelSpecError(
                f"user model {spec}: block {name!r} fails on the output of the block before it "
                f"(input shape {tuple(input_shape)}): {_one_line(exc)}"
            ) from exc
        if not isinstance(x, torch.Tensor):
            raise ModelSpecError(
                f"user model {spec}: block {name!r} returns a {type(x).__name__}; each block must return one tensor"
            )
    if x.dim() != 2:
        raise ModelSpecError(
            f"user model {spec}: the last block {blocks[-1][0]!r} must give (batch, classes) logits, "
            f"got shape {tuple(x.shape)}"
        )
    classes = int(x.shape[1])
    if takes_classes and classes != num_classes:
        raise ModelSpecError(
            f"user model {spec}: asked for {num_classes} classes, the last block gives {classes}"
        )
    return classes


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
