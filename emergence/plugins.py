"""The plugin manager factory and the registry of families and tasks that plugins provide.

There is no module-level manager: call :func:`plugin_manager` (tests build a fresh one and
register throwaway plugins inline). Built-in plugins arrive through the ``emergence``
entry-point group exactly as third-party ones do.
"""

import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from emergence import hookspecs
from emergence.names import lookup

ENTRY_POINT_GROUP = "emergence"
DISABLE_ENV = "EMERGENCE_DISABLE_PLUGINS"


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
    """A fresh manager with every installed plugin except the disabled ones."""
    pm = pluggy.PluginManager("emergence")
    pm.add_hookspecs(hookspecs)
    blocked = set(disabled) | disabled_plugins()
    if entrypoints:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as e:
                raise PluginError(
                    f"Plugin {ep.name!r} ({ep.value}, from {_dist_label(ep)}) failed to import: "
                    f"{type(e).__name__}: {e}. Disable it with {DISABLE_ENV}={ep.name}"
                ) from e
            pm.register(module, name=ep.name)
    pm.check_pending()
    return pm


def plugin_info(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Name, origin, version and implemented hooks of every registered plugin."""
    dists = {ep.name: ep.dist for ep in entry_points(group=ENTRY_POINT_GROUP)}
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
                raise PluginError(
                    f"Plugin {_plugin!r} registered {kind} {name!r}, already registered by plugin "
                    f"{registry.owner[(kind, name)]!r} ({table[name]!r} vs {obj!r}). "
                    f"Disable one with {DISABLE_ENV}=<plugin name>"
                )
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


def _dist_label(ep) -> str:
    dist = ep.dist
    return f"{dist.metadata['Name']} {dist.version}" if dist else "unknown distribution"
