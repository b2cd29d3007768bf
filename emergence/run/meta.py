"""Model metadata from the user, for result files of models no registered family lists: the
``--meta`` file (TOML or CSV: model -> params, params_nonembed, tokens, step, per checkpoint),
parameter counts from a local ``config.json`` (the model built on the meta device, no weights),
the rule that names a model (a hub id's last part; a local path only through --meta or as a
model folder here: ``resolve_checkpoint``) and the check that an imported table has what
``emergence analyze`` needs (``require_essentials``). Every importer uses them.

The format is documented in docs/lm-eval.md ("Metadata from the user"). Every error names the
file and the key; nothing here writes a file.
"""

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from emergence import schema as S
from emergence.names import read_toml, unknown_message

# Fields a model or checkpoint entry may hold, and what each must be.
WHOLE = ("params", "params_nonembed", "step", "tokens_per_step")   # whole numbers >= 0
NUMBER = ("tokens",)                                                # numbers >= 0
TEXT = ("repo", "config")
MODEL_KEYS = WHOLE + NUMBER + TEXT + ("checkpoints",)
CHECKPOINT_KEYS = ("params", "params_nonembed", "step", "tokens")
CSV_KEYS = ("model", "revision", "family") + WHOLE + NUMBER + TEXT
TOP_KEYS = ("family", "models")


class MetaError(ValueError):
    """A --meta file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ModelMeta:
    """What the user says about one model: model-wide fields and per-revision overrides."""
    name: str
    fields: dict                                     # params, params_nonembed, tokens, ..., repo, config
    checkpoints: dict = field(default_factory=dict)  # revision ("main" = none) -> {tokens, step, ...}
    where: str = ""                                  # "ladder.toml: models.m150" for messages


@dataclass(frozen=True)
class UserMeta:
    source: Path
    family: str | None
    models: dict                                     # name -> ModelMeta

    def find(self, repo: str, name: str | None) -> ModelMeta | None:
        """The entry whose ``repo`` is the result file's ``pretrained`` value, else the one named
        ``name`` (None for a local path: a folder name is not a model name)."""
        for m in self.models.values():
            if m.fields.get("repo") and _same_repo(m.fields["repo"], repo):
                return m
        return self.models.get(name) if name else None

    def counts(self, model: ModelMeta, revision: str | None, step: int | None = None) -> dict:
        """params, params_nonembed, tokens, step of one checkpoint: its revision's entry over the
        model's fields; tokens from ``tokens_per_step`` x step where not given; params counted
        from ``config`` where not given. A model with per-revision entries but none for this
        revision is an error (a checkpoint missing from the file)."""
        key = revision or "main"
        if model.checkpoints and key not in model.checkpoints:
            listed = ", ".join(sorted(model.checkpoints)[:5])
            raise MetaError(f"{model.where}.checkpoints has no {key!r} (it lists {listed}); add "
                            f"[models.{_toml_key(model.name)}.checkpoints.{_toml_key(key)}]")
        out = {k: v for k, v in model.fields.items() if k in WHOLE + NUMBER}
        out.update(model.checkpoints.get(key, {}))
        if out.get("step") is None and step is not None:   # the revision's own step (step1000)
            out["step"] = step
        if out.get("tokens") is None and out.get("tokens_per_step") is not None and out.get("step") is not None:
            out["tokens"] = float(out["tokens_per_step"] * out["step"])
        if out.get("params") is None and model.fields.get("config"):
            config = Path(model.fields["config"])
            config = config if config.is_absolute() else self.source.parent / config
            out["params"], out["params_nonembed"] = count_parameters(config, where=f"{model.where}.config")
        return out


def read_meta(path) -> UserMeta:
    """A --meta file (.toml or .csv), checked: unknown keys, wrong types and negative counts are
    errors naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise MetaError(f"--meta {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return _read_toml(path)
    if suffix == ".csv":
        return _read_csv(path)
    raise MetaError(f"--meta {path}: unknown format {suffix or '(no suffix)'!r}; use .toml or .csv")


def count_parameters(config_path, where: str = "") -> tuple[int, int]:
    """(total, non-embedding) parameters of the model a ``config.json`` describes, built on the
    meta device (no memory, no download). Non-embedding leaves out the input and output token
    embeddings (once if tied), as Pythia's and Kaplan et al.'s counts do."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config_path = Path(config_path)
    folder = config_path.parent if config_path.name == "config.json" else config_path
    if not (folder / "config.json").is_file():
        raise MetaError(f"{where or config_path}: no config.json at {folder}")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as e:  # a config transformers cannot build: say which file
        raise MetaError(f"{where + ': ' if where else ''}{folder / 'config.json'}: cannot build a model from it "
                        f"({type(e).__name__}: {e})") from e
    total = sum(p.numel() for p in model.parameters())  # parameters() lists a tied weight once
    embeddings = {id(m.weight): m.weight.numel() for m in (model.get_input_embeddings(), model.get_output_embeddings())
                  if m is not None and getattr(m, "weight", None) is not None}
    return int(total), int(total - sum(embeddings.values()))


def local_config(repo: str) -> Path | None:
    """The config.json of a local model path: in the folder, or beside the file it names."""
    path = Path(repo).expanduser()
    for folder in (path, path.parent) if path.is_file() else (path,):
        if (folder / "config.json").is_file():
            return folder / "config.json"
    return None


def require_essentials(df, meta_given: bool = False):
    """Refuse an imported table that ``emergence analyze`` would refuse or could not analyse:
    a model without family, without params and tokens (no axis), or a family whose models have
    a size axis for some and not others. The error says which flag supplies what is missing,
    and then the table's own checks run (``emergence.tidy.check_tidy``)."""
    from emergence.tidy import check_tidy

    models = df.drop_duplicates(S.CHECKPOINT)
    nameless = models[models[S.FAMILY].fillna("") == ""]
    if len(nameless):
        raise ValueError(f"no family for {_listed(nameless[S.MODEL])} (no registered family lists them): pass "
                         "--family NAME, or put family = \"NAME\" in the --meta file")
    where = "in the --meta file" if meta_given else "with --meta FILE"
    blind = models[models[S.PARAMS].isna() & models[S.TOKENS].isna()]
    if len(blind):
        raise ValueError(f"no params or tokens for {_listed(blind[S.CHECKPOINT])}: nothing to put them on a scale; "
                         f"give each model's params (and tokens per checkpoint) {where}, or import results of a local "
                         "model folder that holds its config.json")
    for fam, g in models.groupby(S.FAMILY):
        for col in (S.PARAMS, S.TOKENS):
            have = g[col].notna()
            if have.any() and not have.all():
                raise ValueError(f"family {fam!r}: {col} known for {_listed(g.loc[have, S.CHECKPOINT])} but not for "
                                 f"{_listed(g.loc[~have, S.CHECKPOINT])}; give {col} {where} for every checkpoint")
    check_tidy(df, source="the imported table", duplicates="error")


def family_name(family, user, registry) -> str | None:
    """--family, or the --meta file's family; the two must agree, and neither may be the name
    of a registered family (whose checkpoints the registry already knows)."""
    if family is not None and (not isinstance(family, str) or not family.strip()):
        raise ValueError(f"--family {family!r}: expected a name")
    named = user.family if user is not None else None
    if family and named and family != named:
        raise ValueError(f"--family {family!r} disagrees with family = {named!r} in --meta {user.source}")
    family = family or named
    if family in registry.families:
        raise ValueError(f"--family {family!r} is a registered family: its checkpoints are matched without "
                         "--family; name the models no registry lists with another family name")
    return family


def resolve_checkpoint(repo: str, revision: str | None, index: dict, *, family: str | None = None,
                       user: UserMeta | None = None, where: str = ""):
    """The checkpoint of a result naming model ``repo`` at ``revision``: the registered one
    (``index``: {(repo lowercased, revision): Checkpoint}), checked against ``user``'s entry for
    it; else one named and counted from ``user`` (the --meta file) and a local config.json, in
    ``family``. A local path is named only by a meta entry's ``repo`` or as a model folder here;
    ``where`` (the result file) starts every error."""
    from emergence.families import Checkpoint

    ck = index.get((repo.lower(), revision))
    if ck is not None:
        if user is not None:
            _agrees_with_registry(ck, user)
        return ck
    config = local_config(repo) if is_local(repo) else None
    name = model_name(repo, config)
    entry = user.find(repo, name) if user is not None else None
    if entry is None and name is None:
        raise ValueError(f"{where}: pretrained={repo} is a local path, and a folder above a model is no model name; "
                         f"name the model in --meta (a [models.NAME] table with repo = \"{repo}\")")
    if entry is None and user is not None:
        raise ValueError(f"{where}: model {name!r} (pretrained={repo}) is not in --meta {user.source}; add a "
                         f"[models.{name}] table (or a CSV row) with its params and tokens")
    step = re.fullmatch(r"step(\d+)", revision or "")
    step = int(step.group(1)) if step else None
    counts = user.counts(entry, revision, step) if entry is not None else {}
    if counts.get("params") is None and config is not None:
        counts["params"], counts["params_nonembed"] = count_parameters(config, where=f"{where}: pretrained={repo}")
    model = entry.name if entry is not None else name
    step = counts.get("step", step)
    return Checkpoint(family=family or "", name=f"{model}@{revision}" if revision else model, repo=repo,
                      revision=revision, model=model, params=counts.get("params"),
                      params_nonembed=counts.get("params_nonembed"), tokens=counts.get("tokens"), step=step)


def _agrees_with_registry(ck, user):
    """A --meta entry for a registered checkpoint must say what the registry says."""
    entry = user.find(ck.repo, ck.model)
    if entry is None or (entry.checkpoints and (ck.revision or "main") not in entry.checkpoints):
        return
    for key, value in user.counts(entry, ck.revision, ck.step).items():
        known = getattr(ck, key, None)
        if known is not None and key != "tokens_per_step" and float(known) != float(value):
            raise ValueError(f"{entry.where}: {key} = {_number(value)}, but the registered family {ck.family!r} "
                             f"says {_number(known)} for {ck.name}; drop the entry (the registry has it) or fix it")


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def is_local(repo: str) -> bool:
    """A path rather than a hub id: absolute, relative (./, ../, ~), more than org/name, or here."""
    return (repo.startswith(("/", ".", "~")) or "\\" in repo or repo.strip("/").count("/") > 1
            or Path(repo).expanduser().exists())


def model_name(repo: str, config) -> str | None:
    """The name of a hub id (``org/name`` -> name); of a local path only where it is the model's
    own folder (it holds config.json); else None."""
    if not is_local(repo):
        return repo.rstrip("/").split("/")[-1]
    if config is not None:
        return config.parent.name
    return None


def _listed(names, limit: int = 3) -> str:
    names = list(dict.fromkeys(map(str, names)))
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ----------------------------------------------------------------------------- helpers

def _read_toml(path: Path) -> UserMeta:
    try:
        data, _ = read_toml(path, MetaError)
    except UnicodeDecodeError as e:
        raise MetaError(f"--meta {path}: not a text file: {e}") from None
    _unknown(data, TOP_KEYS, f"{path}", "top-level key")
    family = _text(data.get("family"), f"{path}: family")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise MetaError(f"{path}: no [models.NAME] tables; each model of the result files needs one "
                        "(params, params_nonembed, tokens, ...)")
    out = {}
    for name, entry in models.items():
        where = f"{path}: models.{_toml_key(name)}"
        _table(entry, MODEL_KEYS, where, "a table")
        fields = _fields(entry, WHOLE + NUMBER + TEXT, where)
        checkpoints = entry.get("checkpoints", {})
        if not isinstance(checkpoints, dict):
            raise MetaError(f"{where}.checkpoints is {_shown(checkpoints)}; expected a table revision -> {{tokens, step}}")
        revs = {}
        for rev, ck in checkpoints.items():
            ck_where = f"{where}.checkpoints.{_toml_key(rev)}"
            _table(ck, CHECKPOINT_KEYS, ck_where, "a table such as { tokens = 2.1e9, step = 1000 }")
            revs[rev] = _fields(ck, CHECKPOINT_KEYS, ck_where)
        out[name] = ModelMeta(name, fields, revs, where)
    return UserMeta(path, family, out)


def _read_csv(path: Path) -> UserMeta:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except (UnicodeDecodeError, csv.Error) as e:
        raise MetaError(f"--meta {path}: not a CSV file: {e}") from None
    unknown = [h for h in header if h not in CSV_KEYS]
    if unknown:
        raise MetaError(f"{path}: unknown column(s) {unknown}; the columns are {', '.join(CSV_KEYS)}")
    if "model" not in header or not rows:
        raise MetaError(f"{path}: needs a 'model' column and one row per model or checkpoint")
    families = {r["family"].strip() for r in rows if (r.get("family") or "").strip()}
    if len(families) > 1:
        raise MetaError(f"{path}: column 'family' names {sorted(families)}; one file describes one family")
    models: dict = {}
    for i, row in enumerate(rows, start=2):   # line 1 is the header
        where = f"{path}: line {i}"
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        name = row.get("model")
        if not name:
            raise MetaError(f"{where}: column 'model' is empty")
        values = {k: _parse_csv(v, k, f"{where}, column {k!r}") for k, v in row.items()
                  if k in WHOLE + NUMBER + TEXT and v != ""}
        model = models.setdefault(name, ModelMeta(name, {}, {}, f"{path}: model {name}"))
        revision = row.get("revision") or None
        if revision is None:
            if model.fields:
                raise MetaError(f"{where}: model {name!r} has a second row without a revision")
            model.fields.update(_fields(values, WHOLE + NUMBER + TEXT, where))
        else:
            if revision in model.checkpoints:
                raise MetaError(f"{where}: model {name!r}, revision {revision!r} appears twice")
            model_wide = {k: values.pop(k) for k in list(values) if k not in CHECKPOINT_KEYS}
            _merge_model_wide(model, model_wide, where)
            model.checkpoints[revision] = _fields(values, CHECKPOINT_KEYS, where)
    return UserMeta(path, families.pop() if families else None, models)


def _merge_model_wide(model: ModelMeta, values: dict, where: str):
    """Model-wide columns (repo, config, tokens_per_step) on checkpoint rows: one value per model."""
    for k, v in values.items():
        if model.fields.setdefault(k, v) != v:
            raise MetaError(f"{where}: column {k!r} is {v!r}, but an earlier row of model {model.name!r} "
                            f"says {model.fields[k]!r}")


def _parse_csv(text: str, key: str, where: str):
    if key in TEXT:
        return text
    try:
        value = float(text)
    except ValueError:
        raise MetaError(f"{where} is {text!r}; expected a number") from None
    return int(value) if key in WHOLE and value.is_integer() else value


def _fields(entry: dict, keys, where: str) -> dict:
    out = {}
    for key in keys:
        if key not in entry:
            continue
        value = entry[key]
        if key in TEXT:
            out[key] = _text(value, f"{where}.{key}")
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if key in WHOLE:
            ok = ok and float(value).is_integer()
        if not ok:
            want = "a whole number, 0 or more" if key in WHOLE else "a number, 0 or more"
            raise MetaError(f"{where}.{key} is {_shown(value)}; expected {want}")
        out[key] = int(value) if key in WHOLE else float(value)
    return out


def _text(value, where):
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MetaError(f"{where} is {_shown(value)}; expected text")
    return value.strip()


def _table(entry, allowed, where: str, expected: str):
    """``entry`` is a TOML table with only ``allowed`` keys, or an error naming ``where``."""
    if not isinstance(entry, dict):
        raise MetaError(f"{where} is {_shown(entry)}; expected {expected}")
    _unknown(entry, allowed, where, "key")


def _unknown(entry: dict, allowed, where: str, what: str):
    unknown = [k for k in entry if k not in allowed]
    if unknown:
        raise MetaError(f"{where}: {unknown_message(what, unknown[0], allowed)}")


def _same_repo(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else f'"{key}"'


def _shown(value, limit: int = 60) -> str:
    text = repr(value)
    return f"{text[:limit]}{'...' if len(text) > limit else ''} ({type(value).__name__})"
