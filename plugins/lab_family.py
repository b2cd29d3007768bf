"""Registers the emergence lab family ``lab`` once it has been trained (docs/lab.md).

The family is the default ``LabConfig`` trained by ``emergence lab train`` or ``emergence demo``
into the lab cache (``.cache/emergence/lab/<config digest>/``, or ``$EMERGENCE_LAB_CACHE``).
Until then nothing is registered. Families trained with other configs are evaluated by path:
``emergence run --family <folder>/family.toml``.
"""

from emergence.hookspecs import hookimpl


@hookimpl
def register_families(register):
    from emergence.lab.training import FAMILY_FILE, LabConfig, family_dir, trained

    folder = family_dir(LabConfig())
    if not trained(folder):
        return
    from emergence_plugins.local_families import family_from_toml

    family = family_from_toml(folder / FAMILY_FILE)
    register(type(family)(name=family.name, checkpoints=family.checkpoints,
                          description=f"emergence lab, trained from scratch (docs/lab.md): {folder}",
                          tags=("lab", "local")))
