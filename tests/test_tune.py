"""`s3rec tune` (a resumable optuna search on validation only) and presets (`--preset`, `s3rec presets`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from s3rec.cli import main
from s3rec.config import PretrainConfig, TrainConfig, with_overrides
from s3rec.errors import ConfigError
from s3rec.presets import apply_finetune, apply_pretrain, load_preset, parse_preset, preset_names
from s3rec.tune.space import load_space, parse_space
from s3rec.tune.study import Tuner, make_setup

TINY = ["--set", "epochs=1", "--set", "hidden_size=16", "--set", "patience=1"]


def _tune(study: Path, trials: int, *extra: str) -> int:
    return main(["tune", "--dataset", "Tiny", "--trials", str(trials), "--study-dir", str(study), *TINY, *extra])


def _study(study_dir: Path):
    import optuna

    from s3rec.tune.study import _storage

    storage = _storage(study_dir)
    (name,) = [s.study_name for s in storage.get_all_studies()]
    return optuna.load_study(study_name=name, storage=storage)


def _complete(study_dir: Path):
    from optuna.trial import TrialState

    return _study(study_dir).get_trials(states=(TrialState.COMPLETE,))


def test_tiny_study_completes_continues_and_selects_on_validation(tiny_data, tmp_path, capsys, monkeypatch):
    import s3rec.train

    def no_test(*args, **kwargs):  # a search must never evaluate test, let alone select on it
        raise AssertionError("test evaluated during a search")

    monkeypatch.setattr(s3rec.train, "evaluate_ranks", no_test)
    study = tmp_path / "study"
    assert _tune(study, 2) == 0
    best = json.loads((study / "best.json").read_text())
    first = {t.number: (t.params, t.value) for t in _complete(study)}
    assert sorted(first) == [0, 1]
    assert best["metric"] == "MRR" and best["split"] == "valid"
    assert best["value"] == max(v for _, v in first.values())
    for t in _complete(study):  # the objective is the best epoch's validation score of the trial's run
        results = json.loads((study / t.user_attrs["run_dir"] / "results.json").read_text())
        assert t.value == results["valid"]["MRR"] and results["test"] is None
        assert not (study / t.user_attrs["run_dir"] / "test_ranks.npy").exists()
    printed = json.loads(capsys.readouterr().out)
    assert printed["trial"] == best["trial"]

    # a larger target continues the same study: the finished trials are kept, not run again
    mtime = (study / "trials" / "0000" / "results.json").stat().st_mtime_ns
    assert _tune(study, 3) == 0
    err = capsys.readouterr().err
    assert "2 complete, 0 failed; 1 to run (target 3)" in err and "trial 3/3 (#2)" in err
    again = {t.number: (t.params, t.value) for t in _complete(study)}
    assert sorted(again) == [0, 1, 2] and {k: again[k] for k in first} == first
    assert (study / "trials" / "0000" / "results.json").stat().st_mtime_ns == mtime
    assert json.loads((study / "best.json").read_text())["trials"]["complete"] == 3

    # other settings in the same folder: a one-line error, nothing run
    assert _tune(study, 4, "--set", "lr=0.01", "--space", str(_space_file(tmp_path))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds the search" in err[0]
    assert len(_complete(study)) == 3


def _space_file(tmp_path: Path, body: str = 'hidden_dropout = { type = "float", low = 0.1, high = 0.6 }\n') -> Path:
    path = tmp_path / "space.toml"
    path.write_text('description = "test"\n[finetune]\n' + body)
    return path


def test_sampling_is_deterministic_and_conditional(tiny_data, tmp_path):
    space = load_space("finetune")
    sets = {"epochs": "1", "hidden_size": "16", "patience": "1"}
    runs = []
    for name, targets in (("a", [3]), ("b", [2, 3])):  # at once, or continued: the same search
        for n in targets:
            Tuner(make_setup("Tiny", space, sets, study_dir=tmp_path / name), log=lambda m: None).run(n)
        runs.append([t.params for t in _complete(tmp_path / name)])
    assert runs[0] == runs[1]
    for params in runs[0]:
        assert ("finetune.n_negatives" in params) == (params["finetune.loss"] in ("sampled-softmax", "gbce"))
        assert ("finetune.gbce_t" in params) == (params["finetune.loss"] == "gbce")


def test_an_interrupted_trial_is_retried_in_its_folder(tiny_data, tmp_path):
    space = load_space(str(_space_file(tmp_path)))
    setup = make_setup("Tiny", space, {"epochs": "1", "hidden_size": "16"}, study_dir=tmp_path / "s")
    tuner = Tuner(setup, log=lambda m: None)
    study = tuner.open_study()
    trial = study.ask()  # a process that died mid-trial leaves it running
    dropout = trial.suggest_float("finetune.hidden_dropout", 0.1, 0.6)
    trial.set_user_attr("run_dir", "trials/0000")
    assert tuner.run(2)["trials"] == {"complete": 2, "failed": 0, "target": 2}
    trials = _study(tmp_path / "s").trials
    assert trials[0].state.name == "FAIL"
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state.name == "COMPLETE" and retry.params["finetune.hidden_dropout"] == dropout
    assert retry.user_attrs["run_dir"] == "trials/0000"
    assert len(trials) == 3  # the retry and one new trial: the interrupted one does not count


def test_pretraining_variants_are_pretrained_once_each(tiny_data, tmp_path):
    path = tmp_path / "pre.toml"
    path.write_text('[pretrain]\nmask_p = { type = "categorical", choices = [0.2, 0.3] }\n'
                    '[finetune]\nlr = { type = "float", low = 1e-3, high = 1e-2, log = true }\n')
    setup = make_setup("Tiny", load_space(str(path)), {"epochs": "1", "hidden_size": "16"}, {"epochs": "1"},
                       study_dir=tmp_path / "s")
    assert setup.pretrain.hidden_size == 16 and setup.finetune.hidden_size == 16
    Tuner(setup, log=lambda m: None).run(4)
    masks = {t.params["pretrain.mask_p"] for t in _complete(tmp_path / "s")}
    assert len(list((tmp_path / "s" / "pretrain").iterdir())) == len(masks)
    for t in _complete(tmp_path / "s"):
        assert t.user_attrs["finetune"]["init"].startswith(str(tmp_path / "s" / "pretrain"))


@pytest.mark.parametrize("body, words", [
    ('hiden_dropout = { type = "float", low = 0.1, high = 0.6 }', "hiden_dropout"),
    ('hidden_dropout = { type = "float", low = 0.6, high = 0.1 }', "low must be < high"),
    ('hidden_dropout = { type = "float", low = 0.1, high = 1.0 }', "dropout must be in [0, 1)"),
    ('lr = { type = "float", low = 0.0, high = 0.1, log = true }', "needs low > 0"),
    ('n_negatives = { type = "int", low = 1.5, high = 8 }', "must be an integer"),
    ('lr = { type = "uniform", low = 0.1, high = 0.2 }', "type must be one of"),
    ('lr = { type = "float", low = 0.1, hi = 0.2 }', "unknown key 'hi'"),
    ('loss = { type = "categorical", choices = ["bce", "focal"] }', "loss must be one of"),
    ('gbce_t = { type = "float", low = 0.1, high = 0.2, when = { loss = ["gbce"] } }', "not a categorical parameter"),
    ('init = { type = "categorical", choices = ["a.pt"] }', "chosen on the command line"),
])
def test_bad_space_is_a_one_line_error(body, words, tiny_data, tmp_path, capsys):
    path = _space_file(tmp_path, body + "\n")
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_space(str(path))
    assert _tune(tmp_path / "s", 1, "--space", str(path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    assert not (tmp_path / "s").exists()


def test_searched_and_fixed_is_an_error(tiny_data, tmp_path, capsys):
    assert _tune(tmp_path / "s", 1, "--set", "lr=0.01") == 2
    assert "lr is both searched" in capsys.readouterr().err


def test_unknown_space_and_preset_are_one_line_errors(tiny_data, tmp_path, capsys):
    assert _tune(tmp_path / "s", 1, "--space", "nope") == 2
    assert "unknown search space 'nope'" in capsys.readouterr().err
    assert main(["train", "--dataset", "Tiny", "--preset", "nope", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'nope'" in err[0] and "paper" in err[0]
    assert not (tmp_path / "r").exists()


def test_paper_preset_spells_out_the_defaults():
    paper = load_preset("paper")
    assert paper.description
    assert apply_finetune(TrainConfig(), paper) == TrainConfig()
    assert apply_pretrain(PretrainConfig(), paper) == PretrainConfig()


def test_presets_command_lists_and_shows(capsys):
    assert main(["presets"]) == 0
    assert "paper" in capsys.readouterr().out
    assert main(["presets", "paper"]) == 0
    assert "lr=0.001" in capsys.readouterr().out


@pytest.mark.parametrize("text, words", [
    ('[finetune]\nhiden_size = 16\n', "hiden_size"),
    ('[finetune]\nlr = "fast"\n', "lr"),
    ('[finetune]\ninit = "x.pt"\n', "chosen on the command line"),
    ('[trainer]\nlr = 0.1\n', "unknown key 'trainer'"),
    ('[pretrain]\nmask_p = 2.0\n', "mask_p must be in"),
])
def test_bad_preset_is_an_error(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_preset(text, "x", "x.toml")


def test_preset_lies_under_flags_and_sets(tiny_data, tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text('description = "mine"\n[finetune]\nlr = 0.002\nhidden_dropout = 0.3\nepochs = 1\nhidden_size = 16\n'
                      'loss = "ce"\n')
    out = tmp_path / "r"
    assert main(["train", "--dataset", "Tiny", "--preset", str(preset), "--set", "lr=0.005", "--loss", "bce",
                 "--out", str(out), "--quiet"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["lr"], cfg["loss"]) == (0.005, "bce")  # flags and --set win
    assert (cfg["hidden_dropout"], cfg["epochs"], cfg["hidden_size"]) == (0.3, 1, 16)  # the rest from the preset


def test_run_preset_sets_both_stages(tiny_data, tmp_path):
    preset = tmp_path / "both.toml"
    preset.write_text('description = "both"\n[finetune]\nlr = 0.002\nepochs = 1\nhidden_size = 16\n'
                      '[pretrain]\nmask_p = 0.3\nsp_weight = 0.0\nhidden_size = 16\n')
    out = tmp_path / "run"
    assert main(["run", "--dataset", "Tiny", "--preset", str(preset), "--pretrain-epochs", "1",
                 "--pretrain-set", "sp_weight=0.25", "--out", str(out), "--quiet"]) == 0
    pre = json.loads((out / "pretrain" / "config.json").read_text())
    ft = json.loads((out / "finetune" / "config.json").read_text())
    assert (pre["mask_p"], pre["sp_weight"], pre["hidden_size"], pre["epochs"]) == (0.3, 0.25, 16, 1)
    assert (ft["lr"], ft["epochs"], ft["hidden_size"]) == (0.002, 1, 16)


def test_saved_preset_round_trips(tiny_data, tmp_path, capsys):
    study = tmp_path / "study"
    assert _tune(study, 2, "--save-preset", "tiny-tuned", "--preset-dir", str(tmp_path / "presets")) == 0
    best = json.loads((study / "best.json").read_text())
    preset = load_preset(str(tmp_path / "presets" / "tiny-tuned.toml"))
    assert preset.source["trial"] == best["trial"] and preset.source["split"] == "valid"
    for k, v in best["params"]["finetune"].items():
        assert preset.finetune[k] == v
    cfg = with_overrides(TrainConfig(dataset="Tiny"), preset.finetune).validate()
    assert dataclasses.asdict(cfg) == best["finetune"]
    # --trials at or below the finished count runs nothing and can still save the preset
    capsys.readouterr()
    assert _tune(study, 1, "--save-preset", "again", "--preset-dir", str(tmp_path / "presets")) == 0
    assert "0 to run" in capsys.readouterr().err
    assert (tmp_path / "presets" / "again.toml").read_text() == (tmp_path / "presets" / "tiny-tuned.toml").read_text()


def test_space_file_parses_the_documented_form():
    space = parse_space('[finetune]\nloss = { type = "categorical", choices = ["bce", "gbce"] }\n'
                        'gbce_t = { type = "float", low = 0.0, high = 1.0, when = { loss = ["gbce"] } }\n'
                        '[pretrain]\nmask_p = { type = "float", low = 0.1, high = 0.4, step = 0.1 }\n', "x", "x.toml")
    assert [p.key for p in space.params] == ["finetune.loss", "finetune.gbce_t", "pretrain.mask_p"]
    assert space.params[1].when == {"loss": ("gbce",)}


def _pretrained_preset(tmp_path: Path, epochs: int = 1) -> Path:
    preset = tmp_path / "plus.toml"
    preset.write_text('description = "plus"\npretrained = true\n[finetune]\nepochs = 1\nhidden_size = 16\n'
                      f'loss = "ce"\n[pretrain]\nepochs = {epochs}\nhidden_size = 16\n')
    return preset


def _train_plus(tmp_path, preset, out, *extra):
    return main(["train", "--dataset", "Tiny", "--preset", str(preset), "--pretrain-dir", str(tmp_path / "pre"),
                 "--quiet", "--out", str(tmp_path / out), *extra])


def test_pretrained_preset_pretrains_once_then_reuses(tiny_data, tmp_path, capsys):
    preset, shared = _pretrained_preset(tmp_path), tmp_path / "pre"
    assert _train_plus(tmp_path, preset, "a") == 0
    assert "pre-training 1 epochs" in capsys.readouterr().err
    (pre_dir,) = shared.iterdir()
    assert pre_dir.name == "Tiny-hidden_size=16-seed42"  # the one shared folder name (s3rec.shared_pretrain)
    ckpt = pre_dir / "pretrain-epoch-1.pt"
    stamp = ckpt.stat().st_mtime_ns
    assert json.loads((tmp_path / "a" / "config.json").read_text())["init"] == str(ckpt.resolve())
    # another fine-tuning seed: the same pre-training, reused untouched, even with checkpoint.pt pruned
    (pre_dir / "checkpoint.pt").unlink()
    assert _train_plus(tmp_path, preset, "b", "--seed", "7") == 0
    assert f"reusing {ckpt.resolve()}" in capsys.readouterr().err
    assert ckpt.stat().st_mtime_ns == stamp and [p.name for p in shared.iterdir()] == [pre_dir.name]
    assert json.loads((tmp_path / "b" / "config.json").read_text())["init"] == str(ckpt.resolve())
    # --init wins: no pre-training folder is even looked at
    other = tmp_path / "other"
    assert main(["train", "--dataset", "Tiny", "--preset", str(preset), "--pretrain-dir", str(other), "--quiet",
                 "--init", str(ckpt), "--out", str(tmp_path / "c")]) == 0
    assert not other.exists()


def test_pretrained_preset_extends_a_shorter_pretraining_in_the_same_folder(tiny_data, tmp_path, capsys):
    assert _train_plus(tmp_path, _pretrained_preset(tmp_path, epochs=1), "a") == 0
    (pre_dir,) = (tmp_path / "pre").iterdir()
    first = (pre_dir / "pretrain-epoch-1.pt").read_bytes()
    assert _train_plus(tmp_path, _pretrained_preset(tmp_path, epochs=2), "b") == 0
    assert "continuing after epoch 1" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "pre").iterdir()] == [pre_dir.name]  # the length is not in the name
    assert (pre_dir / "pretrain-epoch-1.pt").read_bytes() == first and (pre_dir / "pretrain-epoch-2.pt").is_file()
    assert len((pre_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_pretrained_preset_checks_the_run_folder_before_pretraining(tiny_data, tmp_path, capsys):
    preset = _pretrained_preset(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("taken")
    assert _train_plus(tmp_path, preset, "a") == 2  # not empty, no --resume: refused before any pre-training
    assert "is not empty" in capsys.readouterr().err and not (tmp_path / "pre").exists()
    # a finished run resumed: nothing is pre-trained again, even from another --pretrain-dir
    assert _train_plus(tmp_path, preset, "b") == 0
    assert main(["train", "--dataset", "Tiny", "--preset", str(preset), "--pretrain-dir", str(tmp_path / "pre2"),
                 "--quiet", "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().err and not (tmp_path / "pre2").exists()


def test_limited_data_fine_tuning_pretrains_on_the_same_users(tiny_data, tmp_path):
    assert _train_plus(tmp_path, _pretrained_preset(tmp_path), "a", "--set", "train_fraction=0.5") == 0
    (pre_dir,) = (tmp_path / "pre").iterdir()
    pre = json.loads((pre_dir / "config.json").read_text())
    assert (pre["train_fraction"], pre["fraction_seed"]) == (0.5, 0)
    assert _train_plus(tmp_path, _pretrained_preset(tmp_path), "b") == 0  # all users: another pre-training
    assert len(list((tmp_path / "pre").iterdir())) == 2


def test_pretrained_preset_with_mismatched_encoders_fails_before_pretraining(tiny_data, tmp_path, capsys):
    preset = _pretrained_preset(tmp_path)
    assert _train_plus(tmp_path, preset, "a", "--set", "hidden_size=32") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hidden_size 16 vs 32" in err[0] and "--init" in err[0]
    assert not (tmp_path / "pre").exists() and not (tmp_path / "a").exists()


def test_shared_pretrain_folder_names_the_computation(tiny_data, tmp_path):
    from s3rec.data import registry
    from s3rec.shared_pretrain import data_fingerprint, ensure_pretrained, pretrain_id

    base = PretrainConfig(dataset="Beauty", epochs=150)
    name = pretrain_id(base)
    for same in ({"device": "cuda"}, {"save_every": 5}, {"epochs": 50}, {"fraction_seed": 3}):
        assert pretrain_id(dataclasses.replace(base, **same)) == name, same
    for change in ({"mask_p": 0.3}, {"seed": 1}, {"sp_weight": 0.0}, {"dataset": "Toys"}, {"train_fraction": 0.5}):
        assert pretrain_id(dataclasses.replace(base, **change)) != name, change
    with pytest.raises(ConfigError, match="init"):
        pretrain_id(dataclasses.replace(base, init="x.pt"))
    # other files under the same name: the folder records its data and refuses other data
    ds = registry.load("Tiny")
    folder = tmp_path / "pre" / "Tiny-default-seed42"
    folder.mkdir(parents=True)
    (folder / "data.json").write_text('{"fingerprint": "0123456789ab"}')
    assert data_fingerprint(ds) != "0123456789ab"
    with pytest.raises(ConfigError, match="other data"):
        ensure_pretrained(PretrainConfig(dataset="Tiny", epochs=1, hidden_size=16), ds, folder)
    assert not (folder / "pretrain-epoch-1.pt").exists()


def test_exclusive_lock_makes_the_second_holder_wait(tmp_path):
    import subprocess
    import sys
    import time

    from s3rec.fileio import exclusive_lock

    lock = tmp_path / ".lock"
    child = ("import sys, time; from s3rec.fileio import exclusive_lock\n"
             "with exclusive_lock(sys.argv[1], lambda: print('waited', flush=True)):\n    print('got', flush=True)")
    with exclusive_lock(lock):
        proc = subprocess.Popen([sys.executable, "-c", child, str(lock)], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting for this process's lock
    out, _ = proc.communicate(timeout=30)
    assert out.split() == ["waited", "got"]


def test_shipped_plus_preset_fine_tunes_from_the_paper_pretraining(capsys):
    plus = load_preset("s3rec-plus")
    assert plus.pretrained and plus.pretrain == {} and plus.finetune["loss"] in ("ce", "sampled-softmax", "gbce")
    assert not load_preset("paper").pretrained
    ce = load_preset("s3rec-plus-ce")
    assert ce.pretrained and ce.finetune == {"loss": "ce"} and ce.pretrain == {}
    assert main(["presets", "s3rec-plus"]) == 0
    assert "pre-trains first" in capsys.readouterr().out


@pytest.mark.parametrize("name", [n for n in preset_names() if load_preset(n).pretrained])
def test_shipped_pretrained_presets_fine_tune_the_encoder_they_pre_train(name):
    """A pretrained preset's fine-tuning reads its own pre-training's checkpoint: the same shape."""
    preset = load_preset(name)
    ft, pre = apply_finetune(TrainConfig(), preset), apply_pretrain(PretrainConfig(), preset)
    for key in ("hidden_size", "n_layers", "n_heads", "max_len", "pre_ln"):
        assert getattr(ft, key) == getattr(pre, key), key
    if name == "s3rec-plus-ce-long":
        assert (ft.max_len, pre.max_len, pre.epochs, ft.loss) == (200, 200, 20, "ce")


@pytest.mark.parametrize("value", ['"yes"', "1"])
def test_pretrained_must_be_a_boolean(value):
    with pytest.raises(ConfigError, match="pretrained must be true or false"):
        parse_preset(f'description = "x"\npretrained = {value}\n', "x", "x.toml")


def test_preset_saved_from_a_study_on_a_checkpoint_names_its_pretraining(tmp_path):
    from s3rec.tune.presets import preset_from_best

    run = tmp_path / "pre"
    run.mkdir()
    # made on a GPU machine: still read on this CPU one
    (run / "config.json").write_text(PretrainConfig(dataset="Tiny", epochs=150, mask_p=0.3, seed=7).to_json()
                                     .replace('"device": "cpu"', '"device": "cuda"'))
    best = {"finetune": TrainConfig(dataset="Tiny", init=str(run / "pretrain-epoch-60.pt"), loss="ce").to_dict(),
            "params": {"finetune": {"loss": "ce"}}, "dataset": "Tiny", "protocol": "full", "metric": "NDCG@20",
            "value": 0.1, "trial": 3, "study": "s"}
    _, finetune, pretrain, source, pretrained = preset_from_best(best)
    assert pretrained and pretrain == {"epochs": 60, "mask_p": 0.3, "seed": 7} and finetune["loss"] == "ce"
    assert source["init"].endswith("pretrain-epoch-60.pt")
    # a pre-training continued from another checkpoint is not described by its settings: not claimed
    (run / "config.json").write_text(PretrainConfig(dataset="Tiny", init="elsewhere.pt").to_json())
    assert preset_from_best(best)[4] is False
    best["finetune"]["init"] = str(tmp_path / "nowhere" / "pretrain-epoch-60.pt")  # settings unknown: not claimed
    assert preset_from_best(best)[4] is False


def test_saved_pretrained_preset_reads_back(tmp_path):
    from s3rec.presets import save_preset

    path = save_preset(tmp_path / "p.toml", "d", {"loss": "ce"}, {"mask_p": 0.3}, {"trial": 1}, pretrained=True)
    back = load_preset(str(path))
    assert back.pretrained and back.pretrain == {"mask_p": 0.3} and back.finetune == {"loss": "ce"}
    assert not load_preset(str(save_preset(tmp_path / "q.toml", "d", {"loss": "ce"}))).pretrained


def test_tune_refuses_a_pretrained_preset_without_a_pretraining(tiny_data, tmp_path, capsys):
    assert _tune(tmp_path / "study", 1, "--preset", str(_pretrained_preset(tmp_path))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init CKPT" in err[0] and not (tmp_path / "study").exists()
