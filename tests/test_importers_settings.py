"""lm-eval import: the few-shot setting of each result, duplicates across files, and metadata
from the user (--family, --meta, a local config.json)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.run.importers import import_lmeval
from emergence.run.meta import MetaError, count_parameters, read_meta
from emergence.tidy import read_tidy

FIXTURE = Path(__file__).parent / "fixtures" / "pythia_lmeval" / "pythia-v1"
PYTHIA_RAW = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "pythia" / "raw" / "pythia-v1"
LADDER_TOML = """\
family = "my-ladder"

[models.ladder-s]
params = 1000
params_nonembed = 600
tokens_per_step = 10

[models.ladder-l]
params = 9000
params_nonembed = 7000
[models.ladder-l.checkpoints]
step100 = { tokens = 5e3 }
step200 = { tokens = 1.1e4 }
"""
LADDER_CSV = """\
family,model,revision,params,params_nonembed,tokens,tokens_per_step,step
my-ladder,ladder-s,,1000,600,,10,
my-ladder,ladder-l,step100,9000,7000,5e3,,
,ladder-l,step200,9000,7000,1.1e4,,
"""


def _results(folder, name, model, revision="step100", acc=0.5, stderr=0.01, **fields):
    data = {"results": {"arc_easy": {"acc,none": acc, "acc_stderr,none": stderr}},
            "config": {"model_args": f"pretrained={model},revision={revision}", "num_fewshot": 0}}
    data.update(fields)
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _ladder(tmp_path):
    for model in ("org/ladder-s", "org/ladder-l"):
        for step, acc in (("step100", 0.3), ("step200", 0.6)):
            _results(tmp_path / "results", f"{model[4:]}-{step}.json", model, step, acc=acc)
    return tmp_path / "results"


# ----------------------------------------------------------------------------- settings
def test_a_folder_of_zero_and_five_shot_files_imports_as_one_table():
    df = import_lmeval([FIXTURE / "pythia-160m"])
    arc = df[(df[S.TASK] == "arc_easy") & (df[S.METRIC] == "acc") & (df[S.STEP] == 3000)]
    five = json.loads((FIXTURE / "pythia-160m/five-shot/160m-5shot_step3000.json").read_text())
    assert sorted(arc[S.N_SHOT]) == [0, 5] and set(df[S.SETTING]) == {""}
    assert arc.loc[arc[S.N_SHOT] == 5, S.VALUE].item() == five["results"]["arc_easy"]["acc"]


def test_setting_names_how_the_files_were_evaluated_and_keeps_their_curves_apart(tmp_path):
    from emergence.cli import main

    plain, mc = import_lmeval([FIXTURE / "pythia-160m"]), import_lmeval([FIXTURE / "pythia-160m"], setting=" mc ")
    assert set(mc[S.SETTING]) == {"mc"} and mc.drop(columns=[S.SETTING]).equals(plain.drop(columns=[S.SETTING]))
    both = pd.concat([plain, mc], ignore_index=True)
    from emergence.analysis.verdicts import verdicts

    v = verdicts(both[both[S.METRIC] == "acc"], "tokens", workers=1)
    assert set(v[S.SETTING]) == {"", "mc"} and (v.groupby(S.SETTING).size() == len(v) // 2).all()
    with pytest.raises(ValueError, match="--setting must be one line"):
        import_lmeval([FIXTURE / "pythia-160m"], setting="a\nb")
    out = tmp_path / "mc.csv"
    assert main(["import", "lm-eval", str(FIXTURE / "pythia-160m"), "--setting", "mc", "-o", str(out)]) == 0
    assert set(read_tidy([out])[S.SETTING]) == {"mc"}


@pytest.mark.skipif(not PYTHIA_RAW.is_dir(), reason="no ../shared/reference-data")
def test_a_published_pythia_model_folder_imports_as_one_table():
    df = import_lmeval([PYTHIA_RAW / "pythia-160m"], strict=True)   # 27 zero-shot and 15 five-shot files
    assert df.groupby(S.N_SHOT)[S.CHECKPOINT].nunique().to_dict() == {0: 27, 5: 15} and df.attrs["notes"] == []


def test_lmeval_04_shots_come_per_task_from_n_shot_then_configs_then_config(tmp_path):
    path = _results(tmp_path, "r.json", "org/m", results={"a": {"acc,none": 0.5}, "b": {"acc,none": 0.6},
                                                          "c": {"acc,none": 0.7}},
                    **{"n-shot": {"a": 3}, "configs": {"b": {"num_fewshot": 2}}})
    shots = import_lmeval([path]).set_index(S.TASK)[S.N_SHOT]
    assert shots.to_dict() == {"a": 3, "b": 2, "c": 0}
    # A group without a count of its own has its children's (lm-eval versions differ here).
    path = _results(tmp_path, "g.json", "org/m", results={"g": {"acc,none": 0.5}, "g_x": {"acc,none": 0.6},
                                                          "g_y": {"acc,none": 0.7}},
                    group_subtasks={"g": ["g_x", "g_y"]}, **{"n-shot": {"g_x": 5, "g_y": 5}})
    df = import_lmeval([path])
    assert df.set_index(S.SUBTASK)[S.N_SHOT].to_dict() == {"": 5, "x": 5, "y": 5}


@pytest.mark.parametrize("fields,key", [({"n-shot": {"arc_easy": -1}}, r"'n-shot\.arc_easy' is -1"),
                                        ({"n-shot": [0]}, r"'n-shot' is \[0\]"),
                                        ({"configs": {"arc_easy": {"num_fewshot": "5"}}},
                                         r"'configs\.arc_easy\.num_fewshot' is '5'")])
def test_a_bad_shot_count_is_an_error_naming_file_and_key(tmp_path, fields, key):
    with pytest.raises(ValueError, match=r"r\.json: " + key):
        import_lmeval([_results(tmp_path, "r.json", "org/m", **fields)])


def test_one_task_in_two_suites_with_the_same_numbers_is_kept_once_with_a_note(tmp_path):
    a = _results(tmp_path, "suite_a.json", "org/m", results={"arc_easy": {"acc,none": 0.5}, "piqa": {"acc,none": 0.6}})
    b = _results(tmp_path, "suite_b.json", "org/m", results={"arc_easy": {"acc,none": 0.5}, "boolq": {"acc,none": 0.7}})
    df = import_lmeval([a, b])
    assert sorted(df[S.TASK]) == ["arc_easy", "boolq", "piqa"]
    note, = df.attrs["notes"]
    assert "1 result(s) in two files (identical, kept once)" in note and "suite_a.json" in note and "suite_b.json" in note


def test_different_numbers_for_one_result_name_both_files_unless_first_is_asked(tmp_path):
    a = _results(tmp_path, "one.json", "org/m", acc=0.5)
    b = _results(tmp_path, "two.json", "org/m", acc=0.55)
    with pytest.raises(ValueError, match=r"one\.json and .*two\.json both hold m@step100 / arc_easy .*0-shot"
                                         r".*--duplicates first"):
        import_lmeval([a, b])
    df = import_lmeval([a, b], duplicates="first")
    assert df[S.VALUE].tolist() == [0.5] and "the first file's kept" in df.attrs["notes"][0]


def test_curves_never_mix_settings():
    from emergence.analysis.verdicts import verdicts

    rows = [{S.FAMILY: "f", S.MODEL: f"m{i}", S.PARAMS: 10.0 ** (6 + i), S.TASK: "t", S.METRIC: "acc",
             S.VALUE: 0.1 * i + 0.01 * k, S.N_SHOT: k, S.SETTING: setting}
            for i in range(5) for k, setting in ((0, ""), (5, ""), (5, "mc"))]
    from emergence.tidy import check_tidy

    v = verdicts(check_tidy(pd.DataFrame(rows)), "params", workers=1)
    assert sorted(zip(v[S.N_SHOT], v[S.SETTING])) == [(0, ""), (5, ""), (5, "mc")]
    assert (v["n_points"] == 5).all()
    from emergence.report.tables import glance, verdict_rows

    grid = glance(v.assign(axis="params"))
    assert grid["settings"]        # a grid row per setting (these 5-point curves are undetermined: hidden)
    assert sorted(r["setting"] for r in verdict_rows(v)) == ["0-shot", "5-shot", "5-shot, mc"]
    from emergence.report.tables import audit_rows

    audit = pd.DataFrame({S.FAMILY: "f", S.TASK: "t", S.N_SHOT: [0, 5], S.SETTING: ["", "mc"], "axis": "params",
                          "label": "none", "reason": ""})
    assert [r["setting"] for r in audit_rows(audit)] == ["0-shot", "5-shot, mc"]   # the audit says which setting
    assert not glance(v.drop(columns=list(S.SETTING_KEYS)).assign(axis="params"))["settings"]


def test_a_tasks_figures_show_its_commonest_setting_and_say_which():
    from emergence.report.context import _primary

    t = pd.DataFrame({S.FAMILY: "f", S.MODEL: "m", S.TASK: "t", S.SUBTASK: "", S.METRIC: "acc",
                      S.N_SHOT: [0.0, 0.0, 5.0], S.SETTING: ["", "", "mc"], S.VALUE: [1, 2, 3]})
    rows, sub, metric, setting = _primary(t)
    assert rows[S.VALUE].tolist() == [1, 2] and (sub, metric) == ("", "acc") and setting["label"] == "0-shot"
    assert _primary(t.iloc[:2])[3]["label"] == ""     # one setting: nothing to say


def test_a_table_without_settings_reads_with_a_note_and_bad_shots_are_errors(tmp_path):
    from emergence.tidy import TidyError

    path = tmp_path / "t.csv"
    path.write_text("family,model,task,metric,value\nf,m,t,acc,0.5\n")
    df = read_tidy([path])
    assert pd.isna(df[S.N_SHOT].item()) and df[S.SETTING].item() == ""
    assert any("n_shot" in n and "setting" in n for n in df.attrs["notes"])
    path.write_text("family,model,task,metric,value,n_shot\nf,m,t,acc,0.5,2.5\n")
    with pytest.raises(TidyError, match=r"'n_shot' has 2\.5 at row 1 of .*t\.csv"):
        read_tidy([path])


def test_a_descriptive_setting_column_can_be_read_as_a_note(tmp_path):
    path = tmp_path / "ref.csv"
    rows = [f"f,m{i},{10 ** (6 + i)},t,acc,{0.1 * i},ladder rung {i}" for i in range(4)]
    path.write_text("family,model,params,task,metric,value,setting\n" + "\n".join(rows) + "\n")
    assert read_tidy([path])[S.SETTING].nunique() == 4       # four settings: four one-point curves
    df = read_tidy([path], setting_is_note=True)
    assert set(df[S.SETTING]) == {""} and df["source_note"].tolist() == [f"ladder rung {i}" for i in range(4)]


# ----------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("suffix,text", [(".toml", LADDER_TOML), (".csv", LADDER_CSV)])
def test_meta_file_gives_family_params_and_tokens(tmp_path, suffix, text):
    meta = tmp_path / f"ladder{suffix}"
    meta.write_text(text)
    df = import_lmeval([_ladder(tmp_path)], meta=meta, strict=True)
    ck = df.drop_duplicates(S.CHECKPOINT).set_index(S.CHECKPOINT)
    assert set(ck[S.FAMILY]) == {"my-ladder"} and set(ck[S.MODEL]) == {"ladder-s", "ladder-l"}
    assert ck.loc["ladder-s@step200", [S.PARAMS, S.PARAMS_NONEMBED, S.TOKENS, S.STEP]].tolist() == [1000, 600, 2000, 200]
    assert ck.loc["ladder-l@step100", [S.PARAMS, S.TOKENS]].tolist() == [9000, 5000]


def test_import_command_writes_a_table_analyze_reads(tmp_path, capsys):
    from emergence.cli import main

    meta, out = tmp_path / "ladder.toml", tmp_path / "ladder.csv"
    meta.write_text(LADDER_TOML.replace('family = "my-ladder"\n', ""))
    args = ["import", "lm-eval", str(_ladder(tmp_path)), "--meta", str(meta), "-o", str(out)]
    assert main(args) == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "no family for ladder-l, ladder-s" in err and "pass --family NAME" in err
    assert main(args + ["--family", "my-ladder"]) == 0
    df = read_tidy([out])
    assert len(df) == 4 and set(df[S.FAMILY]) == {"my-ladder"} and df[S.PARAMS].notna().all()


def test_unknown_models_without_metadata_are_refused_naming_the_flags(tmp_path):
    folder = _ladder(tmp_path)
    with pytest.raises(ValueError, match="no family for .*--family NAME"):
        import_lmeval([folder], strict=True)
    with pytest.raises(ValueError, match="no params or tokens for ladder-l@step100.*--meta FILE"):
        import_lmeval([folder], family="my-ladder", strict=True)


def test_a_local_path_is_named_by_meta_never_by_its_folders(tmp_path):
    path = _results(tmp_path, "r.json", "/some/cluster/path/13B")
    with pytest.raises(ValueError, match=r"r\.json: pretrained=/some/cluster/path/13B is a local path.*--meta.*"
                                         r'repo = "/some/cluster/path/13B"'):
        import_lmeval([path])
    meta = tmp_path / "m.toml"
    meta.write_text('family = "big"\n[models.big-13b]\nrepo = "/some/cluster/path/13B"\nparams = 13_000_000_000\n')
    df = import_lmeval([path], meta=meta, strict=True)
    assert df[S.CHECKPOINT].item() == "big-13b@step100" and df[S.PARAMS].item() == 13_000_000_000


def test_a_local_model_folder_is_counted_from_its_config_json(tmp_path):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(vocab_size=97, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=64)
    folder = tmp_path / "ckpts" / "tiny-neox"
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    model = GPTNeoXForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    assert count_parameters(folder / "config.json") == (total, total - embed)
    df = import_lmeval([_results(tmp_path, "r.json", str(folder))], family="tiny", strict=True)
    assert (df[S.MODEL].item(), df[S.PARAMS].item(), df[S.PARAMS_NONEMBED].item()) == ("tiny-neox", total, total - embed)
    meta = tmp_path / "m.toml"   # a meta entry's config, relative to the meta file
    meta.write_text('family = "tiny"\n[models.tiny-hub]\nconfig = "ckpts/tiny-neox/config.json"\n')
    df = import_lmeval([_results(tmp_path / "hub", "r.json", "org/tiny-hub")], meta=meta, strict=True)
    assert (df[S.MODEL].item(), df[S.PARAMS].item()) == ("tiny-hub", total)
    meta.write_text('family = "tiny"\n[models.tiny-hub]\nconfig = "nowhere/config.json"\n')
    with pytest.raises(MetaError, match=r"m\.toml: models\.tiny-hub\.config: no config\.json at .*nowhere"):
        import_lmeval([_results(tmp_path / "hub", "r.json", "org/tiny-hub")], meta=meta)


@pytest.mark.parametrize("name,text,message", [
    ("m.toml", '[models.m]\nparms = 5\n', r"m\.toml: models\.m: Unknown key 'parms'\. Did you mean 'params'"),
    ("m.toml", '[models.m]\nparams = "5"\n', r"m\.toml: models\.m\.params is '5' \(str\); expected a whole number"),
    ("m.toml", '[models.m]\nparams = 1.5\n', r"models\.m\.params is 1\.5 .*whole number"),
    ("m.toml", '[models.m]\ntokens = -1\n', r"models\.m\.tokens is -1 .*a number, 0 or more"),
    ("m.toml", '[models.m.checkpoints]\nstep1 = 5\n', r"models\.m\.checkpoints\.step1 is 5 \(int\); expected a table"),
    ("m.toml", '[models.m.checkpoints]\nstep1 = { tokns = 5 }\n', r"checkpoints\.step1: Unknown key 'tokns'"),
    ("m.toml", 'famly = "x"\n', r"m\.toml: Unknown top-level key 'famly'"),
    ("m.toml", 'family = "x"\n', r"m\.toml: no \[models\.NAME\] tables"),
    ("m.toml", '[models.m\n', r"m\.toml: malformed TOML"),
    ("m.csv", "model,parms\nm,5\n", r"m\.csv: unknown column\(s\) \['parms'\]"),
    ("m.csv", "model,params\nm,five\n", r"m\.csv: line 2, column 'params' is 'five'; expected a number"),
    ("m.csv", "model,revision,tokens\nm,step1,1\nm,step1,2\n", r"line 3: model 'm', revision 'step1' appears twice"),
    ("m.csv", "model,family\na,x\nb,y\n", r"column 'family' names \['x', 'y'\]"),
])
def test_bad_meta_is_an_error_naming_file_and_key(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MetaError, match=message):
        read_meta(path)


def test_models_or_checkpoints_missing_from_meta_are_errors(tmp_path):
    folder = _ladder(tmp_path)
    meta = tmp_path / "m.toml"
    meta.write_text('family = "f"\n[models.ladder-s]\nparams = 10\n')
    with pytest.raises(ValueError, match=r"model 'ladder-l' \(pretrained=org/ladder-l\) is not in --meta .*m\.toml"):
        import_lmeval([folder], meta=meta)
    meta.write_text('family = "f"\n[models.ladder-s]\nparams = 10\n[models.ladder-l.checkpoints]\n'
                    'step100 = { params = 5 }\n')
    with pytest.raises(MetaError, match=r"m\.toml: models\.ladder-l\.checkpoints has no 'step200'"):
        import_lmeval([folder], meta=meta)


def test_meta_that_disagrees_with_a_registered_family_or_flag_is_an_error(tmp_path):
    meta = tmp_path / "m.toml"
    meta.write_text('family = "mine"\n[models.pythia-160m]\nparams = 160000000\n')
    with pytest.raises(ValueError, match=r"m\.toml: models\.pythia-160m: params = 160000000, but the registered "
                                         r"family 'pythia' says 162322944"):
        import_lmeval([FIXTURE / "pythia-160m" / "zero-shot"], meta=meta)
    with pytest.raises(ValueError, match=r"--family 'other' disagrees with family = 'mine' in --meta .*m\.toml"):
        import_lmeval([FIXTURE / "pythia-160m" / "zero-shot"], meta=meta, family="other")
    with pytest.raises(ValueError, match=r"--family 'pythia' is a registered family"):
        import_lmeval([FIXTURE / "pythia-160m" / "zero-shot"], family="pythia")
