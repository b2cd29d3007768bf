"""The plugin manager factory and the registry of families and tasks that plugins provide.

There is no module-level manager: call :func:`plugin_manager` (tests build a fresh one and
register throwaway plugins inline). Built-in plugins arrive through the ``emergence``
entry-point group exactly as third-party ones do. A plugin that is broken (fails to import,
misspells a hook, registers a name twice) stops with its name, its distribution and how to
disable it; one that implements no hook gets a warning.
"""

import difflib
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from emergence import hookspecs
from emergence.names import lookup

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "emergence"
DISABLE_ENV = "EMERGENCE_DISABLE_PLUGINS"
BUILTIN_DISTRIBUTION = "emergence"


class PluginError(RuntimeError):
    """A plugin failed to import or to register; the message names it and how to disable it."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


def disabled_plugins() -> set[str]:
    """Plugin names listed (comma-separated) in $EMERGENCE_DISABLE_PLUGINS."""
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def plugin_manager(disabled=(), entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh manager with every installed plugin except the disabled ones.

    emergence's own plugins are registered first: a third-party plugin that registers a taken
    name is the one named as the duplicate, and its first-result hooks run before the built-in ones.
    """
    pm = pluggy.PluginManager("emergence")
    pm.add_hookspecs(hookspecs)
    blocked = set(disabled) | disabled_plugins()
    origins = {}  # plugin name -> "module, from distribution version"
    for ep in _entry_points() if entrypoints else ():
        if ep.name in blocked or pm.has_plugin(ep.name):
            continue
        origins[ep.name] = origin = f"{ep.value}, from {_dist_label(ep)}"
        try:
            module = ep.load()
        except Exception as e:
            raise PluginError(
                f"Plugin {ep.name!r} ({origin}) failed to import: "
                f"{type(e).__name__}: {e}. Disable it with {DISABLE_ENV}={ep.name}"
            ) from e
        try:
            pm.register(module, name=ep.name)
        except pluggy.PluginValidationError as e:  # e.g. a hook implementation with arguments the hook lacks
            detail = " ".join(str(e).splitlines()[1:]) or str(e)  # the first line repeats the plugin
            raise PluginError(f"Plugin {ep.name!r} ({origin}) has an invalid hook implementation: {detail} "
                              f"Fix it (docs/hooks.md), or disable it with {DISABLE_ENV}={ep.name}") from e
        if not pm.get_hookcallers(module):
            log.warning(_implements_nothing(pm, ep.name, origin, module))
    _check_pending(pm, origins)
    return pm


def plugin_info(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Name, origin, version and implemented hooks of every registered plugin."""
    dists = {ep.name: ep.dist for ep in reversed(_entry_points())}  # the first of a name is the one loaded
    out = []
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(name)
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        out.append(PluginInfo(
            name=name,
            module=getattr(plugin, "__name__", type(plugin).__name__),
            distribution=dist.metadata["Name"] if dist else None,
            version=dist.version if dist else None,
            hooks=hooks,
        ))
    return out


@dataclass
class Registry:
    """Families and tasks collected from all plugins, with the plugin that registered each."""

    families: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)
    owner: dict = field(default_factory=dict)  # (kind, name) -> plugin name

    def task(self, name: str):
        return lookup("task", name, self.tasks)

    def family(self, name: str):
        return lookup("family", name, self.families)


def collect(pm: pluggy.PluginManager, **hook_args) -> Registry:
    """Call every ``register_*`` hook and build the registry, rejecting duplicates.

    Hooks are called through pluggy, so an implementation gets the arguments it names: the
    ``register`` callback, and any ``hook_args`` (for hooks that have grown arguments).
    """
    known = {arg for hook in REGISTER_HOOKS for arg in _spec_args(pm, hook)}
    if unknown := sorted(set(hook_args) - known):
        raise TypeError(f"collect() got {unknown}, which no register_* hook takes ({sorted(known)})")
    registry = Registry()
    _collect(pm, "register_families", "family", registry.families, registry, hook_args)
    _collect(pm, "register_tasks", "task", registry.tasks, registry, hook_args)
    return registry


REGISTER_HOOKS = ("register_families", "register_tasks")


def _collect(pm, hook_name, kind, table, registry, hook_args):
    plugins = pm.get_plugins()
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        plugin = impl.plugin_name

        def register(obj, _plugin=plugin):
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"Plugin {_plugin!r} registered a {kind} without a name: {obj!r}")
            if name in table:
                raise PluginError(_duplicate_message(kind, name, _plugin, obj,
                                                     registry.owner[(kind, name)], table[name]))
            table[name] = obj
            registry.owner[(kind, name)] = _plugin

        # One plugin at a time, so that `register` knows who registers; pluggy's caller passes
        # each implementation the arguments it names.
        only_this = pm.subset_hook_caller(hook_name, [p for p in plugins if p is not impl.plugin])
        try:
            only_this(register=register, **hook_args)
        except PluginError:
            raise
        except Exception as e:
            raise PluginError(
                f"Plugin {plugin!r} failed in {hook_name}: {type(e).__name__}: {e}. "
                f"Disable it with {DISABLE_ENV}={plugin}"
            ) from e


def _spec_args(pm, hook_name) -> tuple[str, ...]:
    spec = getattr(pm.hook, hook_name).spec
    return spec.argnames if spec else ()


def _entry_points() -> list:
    """The group's entry points, emergence's own first, then by distribution and name: the same
    order on every machine, whatever the order of sys.path."""
    def key(ep):
        dist = ep.dist.metadata["Name"] if ep.dist else ""
        return dist != BUILTIN_DISTRIBUTION, dist, ep.name

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=key)


def _check_pending(pm, origins):
    """pluggy's ``check_pending``, with a message that names the plugin and suggests the fix."""
    hooks = _hook_names(pm)
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            plugin = impl.plugin_name
            close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.6)
            hint = f"Did you mean `{close[0]}`?" if close else f"The hooks are {', '.join(hooks)}."
            raise PluginError(
                f"Plugin {plugin!r} ({origins.get(plugin, 'registered directly')}) implements `{name}`, "
                f"which is not an emergence hook. {hint} Fix the name (docs/hooks.md), or disable the "
                f"plugin with {DISABLE_ENV}={plugin}"
            )


def _hook_names(pm) -> list[str]:
    return sorted(name for name, caller in vars(pm.hook).items() if not name.startswith("_") and caller.has_spec())


def _implements_nothing(pm, name, origin, module) -> str:
    """The warning for a plugin module that implements no hook: most likely a forgotten @hookimpl."""
    unmarked = [h for h in _hook_names(pm) if callable(getattr(module, h, None))]
    why = f"{', '.join(unmarked)} is not marked @hookimpl" if unmarked else "no function is marked @hookimpl"
    return (f"Plugin {name!r} ({origin}) implements no hooks ({why}), so it does nothing. Mark its "
            f"hook functions with @hookimpl (from emergence.hookspecs import hookimpl), or disable "
            f"it with {DISABLE_ENV}={name}")


def _duplicate_message(kind, name, plugin, obj, first_plugin, first_obj) -> str:
    """Both plugins with their distributions and the classes of both objects (a full repr runs to
    pages); the later plugin is named first, as the one to rename or disable."""
    dists = {ep.name: _dist_label(ep) for ep in reversed(_entry_points())}
    where = {p: dists.get(p, "registered directly") for p in (plugin, first_plugin)}
    return (f"Plugin {plugin!r} ({where[plugin]}) registered {kind} {name!r} ({_type_name(obj)}), "
            f"already registered by plugin {first_plugin!r} ({where[first_plugin]}, "
            f"{_type_name(first_obj)}). Rename one, or disable a plugin with {DISABLE_ENV}={plugin}")


def _type_name(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _dist_label(ep) -> str:
    dist = ep.dist
    return f"{dist.metadata['Name']} {dist.version}" if dist else "unknown distribution"
