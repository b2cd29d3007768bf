"""A real third-party plugin: installed with pip, found through its entry point, run end to end.

The example package in examples/emergence-example-plugin is pip-installed into a temporary
folder (offline, no build isolation) and put on PYTHONPATH of a fresh interpreter, so discovery
goes through importlib.metadata exactly as for a user's installed package. A second, broken
package checks the messages for a plugin that fails to import, misspells a hook, registers a
duplicate name or implements no hook at all.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "emergence-example-plugin"

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "emergence-broken-plugin"
version = "0.2.0"

[project.entry-points.emergence]
broken_import = "emergence_broken.boom"
duplicate = "emergence_broken.dup"
forgot = "emergence_broken.forgot"
typo = "emergence_broken.typo"

[tool.setuptools]
packages = ["emergence_broken"]
"""
BOOM = 'raise RuntimeError("boom at import")\n'
DUP = """\
from emergence.hookspecs import hookimpl
from emergence.tasks import GENERATE_METRICS, TaskBase


@hookimpl
def register_tasks(register):
    register(TaskBase(name="add_2d", metrics=GENERATE_METRICS))  # the probes plugin has add_2d
"""
TYPO = """\
from emergence.hookspecs import hookimpl


@hookimpl
def register_task(register):  # missing "s"
    pass
"""
FORGOT = """\
def register_tasks(register):  # no @hookimpl
    pass
"""


def _pip_install(source: Path, target: Path) -> Path:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = target.parent / f"{source.name}-src"
    shutil.copytree(source, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(src)], check=True, timeout=120)
    return target


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    return _pip_install(EXAMPLE, tmp_path_factory.mktemp("example") / "site")


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    pkg = tmp_path_factory.mktemp("broken") / "emergence-broken-plugin"
    (pkg / "emergence_broken").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (pkg / "emergence_broken" / "__init__.py").write_text("")
    (pkg / "emergence_broken" / "boom.py").write_text(BOOM)
    (pkg / "emergence_broken" / "dup.py").write_text(DUP)
    (pkg / "emergence_broken" / "typo.py").write_text(TYPO)
    (pkg / "emergence_broken" / "forgot.py").write_text(FORGOT)
    return _pip_install(pkg, pkg.parent / "site")


def emergence(site, *args, disable="", cwd=None):
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "EMERGENCE_DISABLE_PLUGINS": disable}
    env.pop("EMERGENCE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "emergence.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_installed_plugin_is_listed_with_its_distribution(example_site):
    plugins = emergence(example_site, "plugins")
    assert plugins.returncode == 0, plugins.stderr
    line = next(ln for ln in plugins.stdout.splitlines() if ln.startswith("example "))
    assert "emergence-example-plugin 0.1.0" in line and "register_tasks, resolve_task" in line
    tasks = emergence(example_site, "tasks")
    assert tasks.returncode == 0, tasks.stderr
    assert "example_parity  (v2, multiple_choice, plugin example)" in tasks.stdout
    assert "acc [discontinuous, chance 0.5]" in tasks.stdout


def test_installed_plugin_passes_check_task(example_site):
    res = emergence(example_site, "check-task", "example_parity", "example_parity:3")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "example_parity (v2, plugin example from emergence-example-plugin 0.1.0): ok" in res.stdout
    assert "example_parity:3 (v1, resolved from its spec): ok" in res.stdout


RESOLVE = """\
import sys
from emergence.plugins import collect, plugin_manager
from emergence.run.runner import resolve_task
pm = plugin_manager()
task = resolve_task(sys.argv[1], pm, collect(pm))
print(task.name, "|", next(iter(task.examples(0))).prompt.splitlines()[0])
"""


def test_installed_plugin_resolves_its_task_specs(example_site):
    def resolve(spec):
        env = {**os.environ, "PYTHONPATH": str(example_site), "HF_HUB_OFFLINE": "1", "EMERGENCE_DISABLE_PLUGINS": ""}
        return subprocess.run([sys.executable, "-c", RESOLVE, spec], env=env, capture_output=True, text=True,
                              timeout=300)

    ok = resolve("example_parity:3")
    assert ok.returncode == 0, ok.stderr
    name, question = ok.stdout.strip().split(" | ")
    assert name == "example_parity:3" and len(question.split()[2]) == 3  # "Q: Is 512 even or odd?"
    bad = resolve("example_parity:x")
    assert bad.returncode == 1 and "Task 'example_parity:x': write example_parity:<digits>" in bad.stderr


def test_plugin_is_not_there_without_the_install_or_when_disabled(example_site, tmp_path):
    assert "example_parity" not in emergence(tmp_path, "tasks").stdout
    disabled = emergence(example_site, "tasks", disable="example")
    assert disabled.returncode == 0 and "example_parity" not in disabled.stdout


@pytest.mark.slow
def test_installed_task_runs_on_a_tiny_model(example_site, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    run = emergence(example_site, "run", "--family", str(tiny_model_dir), "--tasks",
                    "example_parity,example_parity:2", "--limit", "12", "--seed", "3", "--out", str(out),
                    "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "2 cells evaluated" in run.stdout
    db = sqlite3.connect(out / "results.sqlite")
    plugin, status = db.execute("SELECT plugin, status FROM cells WHERE task = 'example_parity'").fetchone()
    assert (plugin, status) == ("example", "done")
    assert db.execute("SELECT status FROM cells WHERE task = 'example_parity:2'").fetchone() == ("done",)
    assert db.execute("SELECT COUNT(*) FROM samples WHERE task = 'example_parity'").fetchone()[0] == 12
    value, n, chance = db.execute("SELECT value, n, chance FROM scores WHERE task = 'example_parity' "
                                  "AND subtask = '' AND metric = 'acc'").fetchone()
    assert n == 12 and chance == 0.5 and 0.0 <= value <= 1.0
    sub_n = db.execute("SELECT SUM(n) FROM scores WHERE task = 'example_parity' AND metric = 'acc' "
                       "AND subtask IN ('one_digit', 'more_digits')").fetchone()[0]
    assert sub_n == 12  # every example counts in its declared sub-task
    db.close()


def test_plugin_failing_at_import_names_itself_and_the_switch(broken_site):
    res = emergence(broken_site, "tasks")
    assert res.returncode == 1
    assert "Plugin 'broken_import'" in res.stderr
    assert "emergence-broken-plugin 0.2.0" in res.stderr
    assert "RuntimeError: boom at import" in res.stderr
    assert "EMERGENCE_DISABLE_PLUGINS=broken_import" in res.stderr


def test_misspelt_hook_names_the_distribution_and_the_fix(broken_site):
    res = emergence(broken_site, "tasks", disable="broken_import")
    assert res.returncode == 1
    assert ("Plugin 'typo' (emergence_broken.typo, from emergence-broken-plugin 0.2.0) implements "
            "`register_task`, which is not an emergence hook. Did you mean `register_tasks`?") in res.stderr
    assert "EMERGENCE_DISABLE_PLUGINS=typo" in res.stderr


def test_duplicate_task_names_both_distributions_and_the_switch(broken_site):
    res = emergence(broken_site, "tasks", disable="broken_import,typo")
    assert res.returncode == 1
    error = next(line for line in res.stderr.splitlines() if "error:" in line)
    # The third-party plugin is the duplicate, though its package is found before emergence's own.
    assert ("Plugin 'duplicate' (emergence-broken-plugin 0.2.0) registered task 'add_2d' "
            "(emergence.tasks.TaskBase), already registered by plugin 'probes' (emergence 0.1.0, ") in error
    assert error.endswith("EMERGENCE_DISABLE_PLUGINS=duplicate") and len(error) < 400
    ok = emergence(broken_site, "tasks", disable="broken_import,duplicate,typo")
    assert ok.returncode == 0 and "add_2d" in ok.stdout


def test_plugin_without_hookimpls_is_warned_about(broken_site):
    res = emergence(broken_site, "plugins", disable="broken_import,typo")
    assert res.returncode == 0
    assert ("Plugin 'forgot' (emergence_broken.forgot, from emergence-broken-plugin 0.2.0) implements no "
            "hooks (register_tasks is not marked @hookimpl)") in res.stderr
    assert "EMERGENCE_DISABLE_PLUGINS=forgot" in res.stderr
    assert "forgot" not in emergence(broken_site, "plugins", disable="broken_import,typo,forgot").stderr


# A plugin author's first task package, with each mistake the checks are there for.
MISTAKES_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "emergence-mistakes-plugin"
version = "0.1.0"

[project.entry-points.emergence]
mistakes = "emergence_mistakes.tasks"

[tool.setuptools]
packages = ["emergence_mistakes"]
"""
MISTAKES = '''\
import random
from dataclasses import dataclass

from emergence.hookspecs import hookimpl
from emergence.tasks import CONTINUOUS, DISCONTINUOUS, GENERATE_METRICS, Example, Metric, TaskBase

STEP_ACC = Metric("step_acc", CONTINUOUS, 0.1)


@dataclass(frozen=True)
class Sums(TaskBase):
    mistake: str = ""

    def examples(self, seed):
        rng = random if self.mistake == "noisy" else random.Random(f"{self.name}:{seed}")
        for i in range(30):
            a = rng.randint(0, 9)
            yield Example(id="x" if self.mistake == "dup" else str(i), prompt=f"{a} + 1 =", target=f" {a + 1}",
                          subtask="small" if a < 5 else "large")

    def score(self, example, output):
        s = super().score(example, output)
        if self.mistake == "undeclared":
            s[("", "steps_right")] = 1.0
        if self.mistake == "range":
            s[("", "step_acc")] = 3.0  # a count, not a share
        return s


NO_CHANCE = tuple(m for m in GENERATE_METRICS if m.name != "exact_match") + (Metric("exact_match", DISCONTINUOUS),)


@hookimpl
def register_tasks(register):
    register(Sums(name="m_ok", metrics=GENERATE_METRICS))
    register(Sums(name="m_noisy", metrics=GENERATE_METRICS, mistake="noisy"))
    register(Sums(name="m_dup", metrics=GENERATE_METRICS, mistake="dup"))
    register(Sums(name="m_undeclared", metrics=GENERATE_METRICS, mistake="undeclared"))
    register(Sums(name="m_unscored", metrics=GENERATE_METRICS + (STEP_ACC,)))
    register(Sums(name="m_subtasks", metrics=GENERATE_METRICS, subtasks=("small", "large")))
    register(Sums(name="m_range", metrics=GENERATE_METRICS + (STEP_ACC,), mistake="range"))
    register(Sums(name="m_nochance", metrics=NO_CHANCE))
'''


@pytest.fixture(scope="module")
def mistakes_site(tmp_path_factory):
    pkg = tmp_path_factory.mktemp("mistakes") / "emergence-mistakes-plugin"
    (pkg / "emergence_mistakes").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(MISTAKES_PYPROJECT)
    (pkg / "emergence_mistakes" / "__init__.py").write_text("")
    (pkg / "emergence_mistakes" / "tasks.py").write_text(MISTAKES)
    return _pip_install(pkg, pkg.parent / "site")


MISTAKE_TASKS = {  # task: (verdict, what the message says)
    "m_ok": ("ok", None),
    "m_noisy": ("1 error(s)", "examples(0) gives different examples each time it is called (example "),
    "m_dup": ("1 error(s)", "example id(s) 'x' occur more than once; ids must be unique within a seed"),
    "m_undeclared": ("1 error(s)", "scores metric(s) 'steps_right' that it does not declare, so their kind, "
                                   "direction and chance would be guessed from the name; add a Metric"),
    "m_unscored": ("1 error(s)", "declares metric(s) 'step_acc' that score() never returns"),
    "m_subtasks": ("1 error(s)", "declares sub-task(s) 'small', 'large' but score() returns no (subtask, metric) "
                                 "key for them; Example.subtask alone creates no rows"),
    "m_range": ("1 error(s)", "metric 'step_acc' is a proportion but scored 3 for example '0' (60 value(s) "
                              "outside [0, 1]); return a share"),
    "m_nochance": ("0 error(s), 1 warning(s)", "metric 'exact_match' is an accuracy without a chance level"),
}


@pytest.fixture(scope="module")
def mistakes_checked(mistakes_site):
    """One check-task over every task of the package: {task: its lines of output}, and the exit status."""
    res = emergence(mistakes_site, "check-task", *MISTAKE_TASKS)
    sections, current = {}, None
    for line in res.stdout.splitlines():
        if not line.startswith(" "):
            current = line.split(" ")[0]
        sections.setdefault(current, []).append(line)
    return {task: "\n".join(lines) for task, lines in sections.items()}, res.returncode


@pytest.mark.parametrize("task", MISTAKE_TASKS)
def test_check_task_names_the_plugin_the_mistake_and_the_fix(mistakes_checked, task):
    sections, returncode = mistakes_checked
    assert returncode == 1
    status, message = MISTAKE_TASKS[task]
    assert sections[task].startswith(f"{task} (v1, plugin mistakes from emergence-mistakes-plugin 0.1.0): {status}")
    if message:
        assert f"task {task!r}" in sections[task] and message in sections[task]


@pytest.mark.slow
def test_a_run_refuses_the_mistakes_and_keeps_what_is_stored(mistakes_site, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = ("run", "--family", str(tiny_model_dir), "--limit", "6", "--seed", "3", "--out", str(out), "--no-progress")
    first = emergence(mistakes_site, *args, "--tasks", "m_ok")
    assert first.returncode == 0, first.stderr
    res = emergence(mistakes_site, *args, "--tasks", "m_ok,m_noisy,m_range")
    assert res.returncode == 1 and "2 cells evaluated" not in res.stdout
    assert "0 cells evaluated, 1 already done, 2 failed" in res.stdout
    assert "m_noisy: " in res.stderr and "examples(3) gives different examples each time" in res.stderr
    assert "m_range: " in res.stderr and "Task 'm_range' scored metric 'step_acc' = 3 for example '0'" in res.stderr
    db = sqlite3.connect(out / "results.sqlite")
    assert db.execute("SELECT status FROM cells WHERE task = 'm_ok'").fetchone() == ("done",)
    assert db.execute("SELECT COUNT(*) FROM samples WHERE task = 'm_ok'").fetchone()[0] == 6
    assert db.execute("SELECT COUNT(*) FROM scores WHERE task != 'm_ok'").fetchone()[0] == 0
    db.close()
