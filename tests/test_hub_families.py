"""The hub family catalogue: registration, the Pythia and suite checkpoint grids, revision names and
the declared counts."""

import pytest

from emergence.families import parse_size
from emergence.plugins import collect, plugin_manager

PYTHIA_SIZES = ["70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]


@pytest.fixture(scope="module")
def registry():
    import emergence_plugins.hub_families as hub_families

    pm = plugin_manager(entrypoints=False)
    pm.register(hub_families)
    return collect(pm)


@pytest.fixture(scope="module")
def checkpoints(registry):
    return {ck.name: ck for family in registry.families.values() for ck in family.checkpoints}


def test_registers_every_family(registry):
    assert {"pythia", "pythia-deduped", "gpt2", "opt", "cerebras-gpt", "qwen2.5",
            "olmo-2", "olmo-1", "olmo-2-stage1", "amber"} <= set(registry.families)
    for family in registry.families.values():
        assert family.description and family.homepage.startswith("https://")
        assert all(ck.family == family.name for ck in family.checkpoints)


@pytest.mark.parametrize("name,suffix", [("pythia", ""), ("pythia-deduped", "-deduped")])
def test_pythia_grid(registry, name, suffix):
    family = registry.families[name]
    assert family.sizes == PYTHIA_SIZES
    assert len(family.checkpoints) == 8 * 154
    for size in PYTHIA_SIZES:
        cks = [ck for ck in family.checkpoints if ck.size == size]
        steps = [ck.step for ck in cks]
        assert len(steps) == 154
        assert steps[:4] == [0, 1, 2, 4] and steps[10] == 512 and steps[11] == 1000
        assert steps[-1] == 143000 and steps == sorted(set(steps))
        model = f"pythia-{size}{suffix}"
        for ck in cks:
            assert ck.name == f"{model}@step{ck.step}" and ck.model == model
            assert ck.repo == f"EleutherAI/{model}" and ck.revision == f"step{ck.step}"
            assert ck.tokens == ck.step * 2_097_152 and ck.flops is None
    assert family.steps[-1] == 143000


def test_pythia_exact_parameter_counts(checkpoints):
    small = checkpoints["pythia-70m@step143000"]
    assert (small.params, small.params_nonembed) == (70_426_624, 18_915_328)
    # 12b: 36 layers, d_model 5120, vocab 50688; the Pythia README publishes 11,846,072,320 total.
    L, d, vocab = 36, 5120, 50688
    nonembed = L * (12 * d * d + 13 * d) + 2 * d
    for name in ("pythia-12b@step0", "pythia-12b-deduped@step143000"):
        big = checkpoints[name]
        assert big.params_nonembed == nonembed
        assert big.params == nonembed + 2 * vocab * d == 11_846_072_320
    assert checkpoints["pythia-12b@step143000"].training_flops == 6.0 * 11_846_072_320 * 299_892_736_000


@pytest.mark.parametrize("name,total,nonembed", [
    # Parameter counts of the Hugging Face models (embeddings tied; OPT keeps 2 extra positions).
    ("gpt2", 124_439_808, 85_056_000),
    ("gpt2-xl", 1_557_611_200, 1_475_561_600),
    ("opt-125m", 125_239_296, 85_056_000),
    ("opt-350m", 331_196_416, 303_357_952),
    ("Cerebras-GPT-111M", 111_050_496, 70_880_256),
])
def test_known_parameter_counts(checkpoints, name, total, nonembed):
    assert (checkpoints[name].params, checkpoints[name].params_nonembed) == (total, nonembed)


def test_names_unique_across_families(registry):
    names = [ck.name for family in registry.families.values() for ck in family.checkpoints]
    assert len(names) == len(set(names))


def test_other_families_have_a_repo_per_size(registry):
    for family in registry.families.values():
        if family.steps:   # suites of training checkpoints, tested below
            continue
        assert len(family.sizes) >= 4, family.name
        assert len(family.checkpoints) == len(family.sizes), family.name
        repos = [ck.repo for ck in family.checkpoints]
        assert len(set(repos)) == len(repos)
        for ck in family.checkpoints:
            org, _, model = ck.repo.partition("/")
            assert org and model == ck.model == ck.name and ck.size
            assert ck.revision is None and ck.step is None


def test_declared_counts_match_size_labels(checkpoints):
    for ck in checkpoints.values():
        assert (ck.params is None) == (ck.params_nonembed is None), ck.name
        if ck.params is not None:
            # Labels are rounded (opt-350m has 331M), but a wrong layer count or width in a
            # table moves the total much further off its label.
            assert abs(ck.params / parse_size(ck.size) - 1) < 0.08, ck.name
            assert 0 < ck.params_nonembed < ck.params, ck.name
        assert ck.tokens is None or ck.tokens >= 0, ck.name


def test_cerebras_trained_at_20_tokens_per_parameter(registry):
    for ck in registry.families["cerebras-gpt"].checkpoints:
        assert 19.9 < ck.tokens / ck.params < 20.1, ck.name


def test_documented_token_counts(checkpoints):
    assert checkpoints["opt-66b"].tokens == 300e9
    assert checkpoints["Qwen2.5-0.5B"].tokens == 18e12
    assert checkpoints["OLMo-2-0325-32B"].tokens == 6e12
    assert checkpoints["gpt2-medium"].tokens is None


AMBER_TOKENS_PER_CHECKPOINT = 1_706_976 * 2048   # sequences per data chunk x trained positions


def test_amber_lists_all_360_checkpoints(registry):
    family = registry.families["amber"]
    assert family.sizes == ["7b"] and family.steps == list(range(360))
    cks = list(family.checkpoints)
    assert [ck.revision for ck in cks[:-1]] == [f"ckpt_{k:03d}" for k in range(359)]
    assert cks[-1].revision is None and cks[-1].name == "Amber@ckpt_359"   # the default branch
    assert all(ck.tokens == (ck.step + 1) * AMBER_TOKENS_PER_CHECKPOINT for ck in cks)
    # The model card's data mix totals 1259.13B tokens: 360 chunks of sequences of 2049 tokens.
    assert round(360 * 1_706_976 * 2049 / 1e7) == 125913


@pytest.mark.parametrize("repo, revision, step, tokens", [
    ("allenai/OLMo-1B-hf", "step1000-tokens4B", 1000, 1000 * 2048 * 2048),
    ("allenai/OLMo-1B-hf", "step425000-tokens1781B", 425000, 425000 * 2048 * 2048),
    ("allenai/OLMo-1B-hf", "step738020-tokens3094B", 738020, 738020 * 2048 * 2048),
    ("allenai/OLMo-2-1124-7B", "stage1-step928646-tokens3896B", 928646, 928646 * 1024 * 4096),
    ("allenai/OLMo-2-1124-7B", "step1000-tokens5B", 1000, 1000 * 1024 * 4096),   # the model card's form
    ("allenai/OLMo-2-0425-1B", "stage1-step140000-tokens294B", 140000, 140000 * 512 * 4096),
    ("LLM360/Amber", "ckpt_000", 0, AMBER_TOKENS_PER_CHECKPOINT),
    ("LLM360/Amber", "ckpt_356", 356, 357 * AMBER_TOKENS_PER_CHECKPOINT),
])
def test_revision_to_step_and_tokens(repo, revision, step, tokens):
    from emergence_plugins.hub_families import revision_step_tokens

    assert revision_step_tokens(repo, revision) == (step, tokens)


def test_olmo2_names_are_the_rounded_up_token_count():
    from emergence_plugins.hub_families import SUITES, olmo_revision, revision_step_tokens

    olmo2 = [s for s in SUITES if s.name_rounding == "ceil"]
    assert {s.repo for s in olmo2} == {"allenai/OLMo-2-1124-7B", "allenai/OLMo-2-0425-1B"}
    for suite in olmo2:
        for revision in suite.revisions:
            step, _ = revision_step_tokens(suite.repo, revision)
            assert olmo_revision(suite.repo, step) == revision
    with pytest.raises(ValueError, match="list_repo_refs"):
        olmo_revision("allenai/OLMo-1B-hf", 1000)   # OLMo-1 names carry the run's own count


@pytest.mark.parametrize("repo, revision, message", [
    ("allenai/OLMo-1B-hf", "main", "stepN-tokensMB"),
    ("allenai/OLMo-2-1124-7B", "stage2-ingredient1-step11931-tokens50B", "stepN-tokensMB"),
    ("allenai/OLMo-1B-hf", "step1000-tokens40B", "names 40B tokens, but step 1000"),
    ("LLM360/Amber", "ckpt_1", "ckpt_NNN"),
    ("LLM360/amber", "ckpt_001", "Did you mean 'LLM360/Amber'"),
])
def test_bad_revisions_name_the_repo(repo, revision, message):
    from emergence_plugins.hub_families import revision_step_tokens

    with pytest.raises(ValueError, match=message):
        revision_step_tokens(repo, revision)


def test_suite_checkpoints_from_any_branch_list():
    from emergence_plugins.hub_families import suite_checkpoints

    cks = suite_checkpoints("allenai/OLMo-2-1124-7B", ["stage1-step5000-tokens21B", "stage1-step150-tokens1B"])
    assert [ck.step for ck in cks] == [150, 5000]
    assert cks[0].name == "OLMo-2-1124-7B@stage1-step150-tokens1B" and cks[0].family == "olmo-2-stage1"
    assert cks[0].training_flops == 6.0 * 7_298_617_344 * 150 * 1024 * 4096


def _llama_like(layers, d, ffn, vocab, norms_per_block, final_norm, tied):
    """Parameters of a bias-free SwiGLU decoder: attention 4 d^2 and MLP 3 d ffn per block."""
    embed = vocab * d * (1 if tied else 2)
    return layers * (4 * d * d + 3 * d * ffn + norms_per_block * d) + final_norm * d + embed, embed


@pytest.mark.parametrize("name, arch", [
    # OLMo-1: LayerNorm without parameters; 1B ties its embedding (configs/official/OLMo-1B.yaml).
    ("OLMo-1B-hf@step1000-tokens4B", (16, 2048, 8192, 50304, 0, 0, True)),
    ("OLMo-7B-hf", (32, 4096, 11008, 50304, 0, 0, False)),
    # OLMo 2: RMSNorm after attention and MLP, plus q and k norms, untied (configs/official-*).
    ("OLMo-2-1124-7B@stage1-step150-tokens1B", (32, 4096, 11008, 100352, 4, 1, False)),
    ("OLMo-2-0425-1B@stage1-step140000-tokens294B", (16, 2048, 8192, 100352, 4, 1, False)),
    # Amber: the LLaMA-7B configuration its training code loads.
    ("Amber@ckpt_000", (32, 4096, 11008, 32000, 2, 1, False)),
])
def test_suite_parameter_counts_follow_the_architecture(checkpoints, name, arch):
    total, embed = _llama_like(*arch)
    ck = checkpoints[name]
    assert (ck.params, ck.params_nonembed) == (total, total - embed)
