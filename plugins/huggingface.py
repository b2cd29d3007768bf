"""Built-in model loader: any Hugging Face causal LM, from the hub or a local folder.

Safe by default: safetensors only (pickle weights can run code when unpickled) and no
repository code unless the user opts in. Strict: only causal-LM architectures, and every weight
of the model comes from the checkpoint (transformers would fill missing ones, a head included,
with random numbers and carry on). When the hub cannot be reached, loading switches to offline
mode at once instead of waiting on network retries. A model too big for one device is split by
accelerate (``device_map``, ``max_memory``); what fits nowhere is offloaded to disk in the run
directory and deleted with the model.
"""

import os
import shutil
import socket
import tempfile
import weakref
from pathlib import Path

from emergence.hookspecs import hookimpl
from emergence.names import file_name
from emergence.run.devices import resolve_device, resolve_dtype

HUB_HOST = ("huggingface.co", 443)
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names it and says why."""


@hookimpl(trylast=True)
def load_model(checkpoint, options, run_dir):
    return load(checkpoint, options, run_dir)


def load(checkpoint, options, run_dir=None):
    """The checkpoint as an HFEngine; ``run_dir`` holds weights offloaded to disk (a temporary
    folder when None)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from emergence.run.engine import HFEngine

    source, revision = _source(checkpoint)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    common = dict(revision=revision, trust_remote_code=options.trust_remote_code)
    label = f"checkpoint {checkpoint.name!r} ({source}{'@' + revision if revision else ''})"
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except Exception as e:
        if "trust_remote_code" in str(e) and not options.trust_remote_code:
            raise CheckpointError(f"{label}: ships its own Python code, which is never run unless you "
                                  "trust it: set trust_remote_code = true in [backend] (--trust-remote-code)") from e
        raise CheckpointError(f"{label}: cannot read its config: {_short(e)}") from e
    _check_causal(config, label)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
    except Exception as e:
        raise CheckpointError(f"{label}: cannot load its tokenizer (are the tokenizer files there?): "
                              f"{_short(e)}") from e
    # Without tokenizer files transformers may build an empty tokenizer instead of failing.
    if len(tokenizer) < 16 or not tokenizer("The 12 cats.")["input_ids"]:
        raise CheckpointError(f"{label}: has no usable tokenizer ({len(tokenizer)} tokens); "
                              "are the tokenizer files there?")
    kwargs = dict(common, config=config, dtype=dtype, use_safetensors=not options.allow_pickle or None)
    offload = _offload_folder(checkpoint, run_dir) if options.device_map else None
    if offload:
        kwargs.update(device_map=options.device_map, max_memory=_max_memory(options.max_memory),
                      offload_folder=str(offload))
    try:
        model, info = AutoModelForCausalLM.from_pretrained(source, output_loading_info=True, **kwargs)
    except Exception as e:
        if offload:
            shutil.rmtree(offload, ignore_errors=True)
        raise CheckpointError(f"{label}: {_weights_error(e, config, options)}") from e
    problem = _loading_problem(info, type(model).__name__)
    if problem:
        del model
        if offload:
            shutil.rmtree(offload, ignore_errors=True)
        raise CheckpointError(f"{label}: {problem}")
    if offload:
        weakref.finalize(model, shutil.rmtree, offload, ignore_errors=True)  # gone with the model
        # The engine feeds inputs to the device of the input embeddings, which must hold real weights.
        if model.get_input_embeddings().weight.device.type == "meta":
            raise CheckpointError(f"{label}: max_memory {options.max_memory} leaves no room on any device "
                                  "for the input embeddings (everything went to disk); raise it")
    else:
        model = model.to(device)
    return HFEngine(model, tokenizer, batch_size=options.batch_size,
                    max_batch_size=options.max_batch_size, max_length=options.max_length)


def _check_causal(config, label):
    """Refuse a checkpoint saved as anything but a causal LM: AutoModelForCausalLM would load a
    ``BertModel`` as ``BertLMHeadModel`` (bidirectional attention, random head) and score it."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    saved = list(getattr(config, "architectures", None) or [])
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    # Repository code names its causal class in auto_map ("module.Class", maybe "repo--module.Class").
    remote = (getattr(config, "auto_map", None) or {}).get("AutoModelForCausalLM")
    if isinstance(remote, str):
        causal.add(remote.rsplit(".", 1)[-1])
    # Names ending so are causal by convention (old spellings such as LLaMAForCausalLM).
    if saved and not any(a in causal or a.endswith(CAUSAL_SUFFIXES) for a in saved):
        raise CheckpointError(f"{label}: architecture {', '.join(saved)} is not a causal language model; "
                              "only decoder-only (causal) models with their LM head can be evaluated")


def _loading_problem(info: dict, model_class: str) -> str | None:
    """What transformers' loading report says is wrong, or None. The report has already set aside
    the model's own tied weights and the buffers it knows old checkpoints carry; weights of the
    wrong shape make from_pretrained raise."""
    missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    if missing:
        return (f"{len(missing)} weight(s) of {model_class} are not in the checkpoint and would be "
                f"randomly initialised: {_first(missing)}")
    if unexpected:
        return (f"{len(unexpected)} weight(s) in the checkpoint have no place in {model_class} "
                f"(saved from a different architecture?): {_first(unexpected)}")
    return None


def _first(items: list, shown: int = 5) -> str:
    more = len(items) - shown
    return ", ".join(map(str, items[:shown])) + (f" (and {more} more)" if more > 0 else "")


def _weights_error(error, config, options) -> str:
    if isinstance(error, ValueError) and "Unrecognized configuration class" in str(error):
        return (f"{type(config).__name__} is not a causal language model; "
                "only decoder-only (causal) models can be evaluated")
    if isinstance(error, ValueError):
        return _short(error)
    if isinstance(error, OSError):
        hint = "" if options.allow_pickle else " (only safetensors weights are loaded unless allow_pickle = true)"
        return f"cannot load weights{hint}: {_short(error)}"
    return f"weights are unreadable (truncated or corrupt?): {_short(error)}"


def _offload_folder(checkpoint, run_dir) -> Path:
    """An empty folder for the weights accelerate offloads to disk: inside the run directory,
    named safely after the checkpoint (whatever its name holds, it cannot point elsewhere)."""
    if run_dir is None:
        return Path(tempfile.mkdtemp(prefix="emergence-offload-"))
    folder = Path(run_dir) / "offload" / file_name(checkpoint.name)
    shutil.rmtree(folder, ignore_errors=True)  # left by a killed run
    folder.mkdir(parents=True)
    return folder


def _max_memory(caps: dict | None) -> dict | None:
    """Config keys are strings (TOML); accelerate wants GPU indices as ints: "0" or "cuda:0" -> 0."""
    if caps is None:
        return None
    return {int(str(k).removeprefix("cuda:")) if str(k).removeprefix("cuda:").isdigit() else k: v
            for k, v in caps.items()}


def _source(checkpoint) -> tuple[str, str | None]:
    """Local folder or hub id; a path that looks local but is missing is an error, not a hub id."""
    repo = checkpoint.repo
    path = Path(repo).expanduser()
    if path.exists():
        return str(path), None
    if repo.startswith((".", "/", "~")) or os.sep in repo.strip("/").replace("/", "", 1):
        raise CheckpointError(f"checkpoint {checkpoint.name!r}: path {repo} does not exist")
    _go_offline_if_hub_unreachable()
    return repo, checkpoint.revision


def _go_offline_if_hub_unreachable(timeout: float = 2.0):
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
    except OSError:
        # Without this every file lookup would wait on the hub's retries and timeouts.
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            import huggingface_hub.constants as hub_constants

            hub_constants.HF_HUB_OFFLINE = True
        except ImportError:
            pass


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"
