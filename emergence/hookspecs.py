"""The hooks a plugin can implement. Each hook has one heading in docs/hooks.md.

Hooks change only by adding arguments: pluggy lets an implementation accept fewer.
"""

import pluggy

hookspec = pluggy.HookspecMarker("emergence")
hookimpl = pluggy.HookimplMarker("emergence")


@hookspec
def register_families(register):
    """Register model families.

    Call ``register(family)`` with an :class:`emergence.families.Family` for each
    family the plugin provides. Names must be unique across plugins.
    """


@hookspec
def register_tasks(register):
    """Register evaluation tasks.

    Call ``register(task)`` with an object that follows :class:`emergence.tasks.Task`.
    Names must be unique across plugins.
    """


@hookspec(firstresult=True)
def resolve_family(spec):
    """Turn a family spec that is not a registered name (a folder, a TOML file) into a Family.

    Return a :class:`emergence.families.Family`, or None to let the next plugin try.
    """


@hookspec(firstresult=True)
def resolve_task(spec):
    """Turn a task spec that is not a registered name (``lm-eval:arc_easy``) into a task.

    Return an object that follows :class:`emergence.tasks.Task`, or None to let the next plugin
    try. The built-in lm-eval bridge runs last.
    """


@hookspec(firstresult=True)
def load_model(checkpoint, options, run_dir):
    """Load a checkpoint into a model backend.

    ``checkpoint`` is an :class:`emergence.families.Checkpoint`, ``options`` an
    :class:`emergence.run.config.BackendOptions`, ``run_dir`` the run directory (a ``Path``), the
    place for scratch files such as weights offloaded to disk. Return an object implementing
    lm-eval's ``LM`` interface (``loglikelihood``, ``loglikelihood_rolling``,
    ``generate_until``), or None to let the next plugin try. The built-in Hugging Face loader
    runs last.
    """
