"""Plugin discovery, disabling, duplicate and failure handling; docs in sync with hookspecs."""

import re
import sys
from pathlib import Path

import pluggy
import pytest

from emergence import hookspecs
from emergence.families import Checkpoint, Family
from emergence.hookspecs import hookimpl, hookspec
from emergence.plugins import PluginError, collect, plugin_info, plugin_manager
from emergence.run.runner import resolve_task
from emergence.tasks import GENERATE_METRICS, TaskBase

BUILTIN = {"huggingface", "hub_families", "local_families", "lmeval", "probes", "heldout_loss"}


def test_builtin_plugins_arrive_through_entry_points():
    pm = plugin_manager()
    names = {info.name for info in plugin_info(pm)}
    assert BUILTIN <= names
    hf = next(i for i in plugin_info(pm) if i.name == "huggingface")
    assert hf.hooks == ("load_model",) and hf.distribution == "emergence" and hf.version
    lmeval = next(i for i in plugin_info(pm) if i.name == "lmeval")
    assert lmeval.hooks == ("resolve_task",) and lmeval.module == "emergence_plugins.lmeval"


def test_plugin_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("EMERGENCE_DISABLE_PLUGINS", "hub_families, probes")
    names = {info.name for info in plugin_info(plugin_manager())}
    assert "hub_families" not in names and "probes" not in names and "huggingface" in names


def test_each_manager_is_fresh():
    a, b = plugin_manager(entrypoints=False), plugin_manager(entrypoints=False)

    class P:
        @staticmethod
        @hookimpl
        def register_tasks(register):
            pass

    a.register(P, name="p")
    assert not b.has_plugin("p")


def _family_plugin(family_name):
    class P:
        @staticmethod
        @hookimpl
        def register_families(register):
            register(Family(name=family_name, checkpoints=(Checkpoint(family=family_name, name="x", repo="x"),)))
    return P


def test_duplicate_registration_names_both_plugins():
    pm = plugin_manager(entrypoints=False)
    pm.register(_family_plugin("same"), name="first")
    pm.register(_family_plugin("same"), name="second")
    with pytest.raises(PluginError, match=r"'second'.*'same'.*'first'.*EMERGENCE_DISABLE_PLUGINS=second"):
        collect(pm)


DUPLICATE = """\
from emergence.hookspecs import hookimpl
from emergence.tasks import GENERATE_METRICS, TaskBase


@hookimpl
def register_tasks(register):
    register(TaskBase(name="add_2d", metrics=GENERATE_METRICS))  # the probes plugin has add_2d
"""


def test_duplicate_of_a_builtin_task_blames_the_newcomer_briefly(monkeypatch, tmp_path):
    _entry_point_plugin(monkeypatch, tmp_path, "dup_plugin", DUPLICATE)  # found before the built-ins
    with pytest.raises(PluginError) as info:
        collect(plugin_manager())
    message = str(info.value)
    assert message.startswith("Plugin 'dup_plugin' (unknown distribution) registered task 'add_2d' "
                              "(emergence.tasks.TaskBase), already registered by plugin 'probes' (emergence ")
    assert message.endswith("EMERGENCE_DISABLE_PLUGINS=dup_plugin")
    assert len(message) < 400  # not the tasks' dataclass reprs


def test_plugin_failing_at_registration_is_named():
    class Bad:
        @staticmethod
        @hookimpl
        def register_tasks(register):
            raise ZeroDivisionError("boom")

    pm = plugin_manager(entrypoints=False)
    pm.register(Bad, name="bad_plugin")
    with pytest.raises(PluginError, match=r"'bad_plugin'.*ZeroDivisionError.*EMERGENCE_DISABLE_PLUGINS=bad_plugin"):
        collect(pm)


def test_plugin_failing_at_import_is_named(monkeypatch):
    from importlib import metadata

    ep = metadata.EntryPoint(name="exploding", value="no_such_module_for_emergence", group="emergence")
    real = metadata.entry_points
    monkeypatch.setattr("emergence.plugins.entry_points",
                        lambda group: list(real(group=group)) + [ep])
    with pytest.raises(PluginError, match=r"'exploding'.*failed to import.*EMERGENCE_DISABLE_PLUGINS=exploding"):
        plugin_manager()
    monkeypatch.setenv("EMERGENCE_DISABLE_PLUGINS", "exploding")
    assert "exploding" not in {i.name for i in plugin_info(plugin_manager())}


class GrownSpecs:
    """The register hooks as they may grow: ``register_tasks`` has gained an argument."""

    @staticmethod
    @hookspec
    def register_families(register):
        pass

    @staticmethod
    @hookspec
    def register_tasks(register, seed):
        pass


def test_register_hooks_pass_each_argument_by_name():
    pm = pluggy.PluginManager("emergence")
    pm.add_hookspecs(GrownSpecs)
    seen = []

    class Grown:  # written for the grown hook, arguments in any order
        @staticmethod
        @hookimpl
        def register_tasks(seed, register):
            seen.append(seed)
            register(TaskBase(name="grown", metrics=GENERATE_METRICS))

    class Old:  # written before the hook grew
        @staticmethod
        @hookimpl
        def register_tasks(register):
            register(TaskBase(name="old", metrics=GENERATE_METRICS))

    pm.register(Grown, name="grown")
    pm.register(Old, name="old")
    registry = collect(pm, seed=7)
    assert seen == [7] and set(registry.tasks) == {"grown", "old"}
    assert registry.owner[("task", "grown")] == "grown" and registry.owner[("task", "old")] == "old"
    with pytest.raises(TypeError, match="'sed'"):
        collect(pm, sed=7)  # an argument no hook takes is an error, not ignored


def _task_resolver(prefix):
    class Resolver:
        @staticmethod
        @hookimpl
        def resolve_task(spec):
            if spec.startswith(prefix):
                return TaskBase(name=spec, metrics=GENERATE_METRICS, description="custom")
            return None
    return Resolver


def test_third_party_plugin_resolves_its_own_task_specs():
    pm = plugin_manager()
    pm.register(_task_resolver("mine:"), name="mine")
    registry = collect(pm)
    assert resolve_task("mine:x", pm, registry).description == "custom"
    assert resolve_task("add_2d", pm, registry) is registry.tasks["add_2d"]  # registered names first
    with pytest.raises(KeyError, match="Unknown task 'theirs:x'"):
        resolve_task("theirs:x", pm, registry)


def test_lm_eval_bridge_runs_after_other_task_resolvers():
    pm = plugin_manager()
    pm.register(_task_resolver("lm-eval:"), name="mine")  # registered last, yet the built-in is trylast
    assert resolve_task("lm-eval:anything", pm, collect(pm)).description == "custom"


TYPO = """\
from emergence.hookspecs import hookimpl


@hookimpl
def register_task(register):  # missing "s"
    pass
"""


def _entry_point_plugin(monkeypatch, tmp_path, name, source):
    """Module ``name`` with ``source``, announced by an entry point of the same name, the way
    an installed package announces its plugin."""
    from importlib import metadata

    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    ep = metadata.EntryPoint(name=name, value=name, group="emergence")
    real = metadata.entry_points
    # First, as a package on PYTHONPATH is found before emergence's own entry points.
    monkeypatch.setattr("emergence.plugins.entry_points", lambda group: [ep] + list(real(group=group)))


def test_misspelt_hook_in_an_installed_plugin_is_caught(monkeypatch, tmp_path):
    _entry_point_plugin(monkeypatch, tmp_path, "typo_plugin", TYPO)
    with pytest.raises(PluginError, match=r"^Plugin 'typo_plugin' \(typo_plugin, from unknown distribution\) "
                       r"implements `register_task`, .*Did you mean `register_tasks`\?.*"
                       r"EMERGENCE_DISABLE_PLUGINS=typo_plugin$"):
        plugin_manager()
    monkeypatch.setenv("EMERGENCE_DISABLE_PLUGINS", "typo_plugin")
    assert "typo_plugin" not in {i.name for i in plugin_info(plugin_manager())}


def test_hook_with_wrong_arguments_in_an_installed_plugin_is_named(monkeypatch, tmp_path):
    source = "from emergence.hookspecs import hookimpl\n\n\n@hookimpl\ndef register_tasks(reg):\n    pass\n"
    _entry_point_plugin(monkeypatch, tmp_path, "args_plugin", source)
    with pytest.raises(PluginError, match=r"^Plugin 'args_plugin' .*register_tasks.*'reg'.*"
                       r"EMERGENCE_DISABLE_PLUGINS=args_plugin$"):
        plugin_manager()


def test_plugin_module_without_hookimpls_is_warned_about(monkeypatch, tmp_path, caplog):
    source = "def register_tasks(register):  # @hookimpl forgotten\n    pass\n"
    _entry_point_plugin(monkeypatch, tmp_path, "forgot_plugin", source)
    with caplog.at_level("WARNING", logger="emergence.plugins"):
        pm = plugin_manager()
    assert pm.has_plugin("forgot_plugin")
    warned = [r.getMessage() for r in caplog.records if "forgot_plugin" in r.getMessage()]
    assert len(warned) == 1 and "implements no hooks (register_tasks is not marked @hookimpl)" in warned[0]
    assert "EMERGENCE_DISABLE_PLUGINS=forgot_plugin" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="emergence.plugins"):
        plugin_manager()  # the built-ins all implement hooks: no warning without the culprit
    assert not [r for r in caplog.records if "forgot_plugin" not in r.getMessage()]


def test_every_hook_has_one_doc_heading_and_no_more():
    doc = (Path(__file__).parents[1] / "docs" / "hooks.md").read_text()
    headings = re.findall(r"^## (\w+)$", doc, flags=re.M)
    specs = sorted(name for name, obj in vars(hookspecs).items()
                   if callable(obj) and hasattr(obj, "emergence_spec"))
    assert sorted(headings) == specs
    assert len(headings) == len(set(headings))


def test_hooks_doc_lists_every_built_in_plugin_with_its_module():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    root = Path(__file__).parents[1]
    doc = (root / "docs" / "hooks.md").read_text()
    built_in = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["emergence"]
    listed = dict(re.findall(r"^\| `(\w+)` \| `([\w.]+)` \|", doc, flags=re.M))
    assert listed == built_in
