"""Settings that cannot work are refused when the settings are read, before anything is loaded,
allocated or written: seeds outside 0..2**32-1, sizes beyond their documented limits
(``s3rec.config.LIMITS``), an encoder whose parameters alone exceed the memory, floats that are not
finite, zero or negative counts. An unknown setting or model name gets a "did you mean" for a near
miss or another library's name (``learning_rate`` -> ``lr``).

Each through the command line (one line ``s3rec: error: ...`` naming the setting, exit 2, no run
folder) and through the API / config functions underneath.
"""

from __future__ import annotations


import pytest

from conftest import one_error_line, snapshot
from s3rec import config
from s3rec.cli import main
from s3rec.config import LIMITS, SEED_MAX, PretrainConfig, TrainConfig, config_from_json, with_overrides
from s3rec.errors import ConfigError

@pytest.fixture
def cli(tiny_data, tmp_path, monkeypatch, capsys):
    """Run ``s3rec VERB ... --out tmp/out``: returns the one error line, after checking the contract."""
    monkeypatch.chdir(tmp_path)

    def run(verb: str, *args: str, words=()) -> str:
        before = snapshot(tmp_path)
        capsys.readouterr()
        argv = [verb, "--dataset", "Tiny", "--quiet", "--out", str(tmp_path / "out"), *args]
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own type checks
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2, err
        line = one_error_line(err, *words)
        assert snapshot(tmp_path) == before, "the command wrote files"
        assert not (tmp_path / "out").exists()
        return line

    return run


# (the --set given, words the error line must hold)
REFUSED = [
    ("seed=99999999999999999999", ("seed", "4294967295")),
    ("seed=-1", ("seed", "0..4294967295")),
    ("fraction_seed=-1", ("fraction_seed", "0..4294967295")),
    ("fraction_seed=4294967296", ("fraction_seed", "4294967295")),
    ("hidden_size=4000000000", ("hidden_size", "16384")),
    ("max_len=4000000000", ("max_len", "16384")),
    ("n_layers=100000", ("n_layers", "256")),
    ("n_heads=100000", ("n_heads",)),
    ("batch_size=99999999999999", ("batch_size", "1048576")),
    ("batch_size=0", ("batch_size",)),
    ("n_negatives=999999999", ("n_negatives",)),
    ("epochs=0", ("epochs",)),
    ("patience=0", ("patience",)),
    ("valid_users=-1", ("valid_users",)),
    ("min_epochs=99999999999", ("min_epochs", "2147483647")),
    ("lr=inf", ("lr", "finite")),
    ("lr=nan", ("lr", "finite")),
    ("lr=-inf", ("lr", "finite")),
    ("lr=0", ("lr",)),
    ("lr=1e999", ("lr", "finite")),
    ("weight_decay=inf", ("weight_decay", "finite")),
    ("weight_decay=-1", ("weight_decay",)),
    ("hidden_dropout=nan", ("hidden_dropout", "finite")),
    ("gbce_t=nan", ("gbce_t", "finite")),
    ("train_fraction=inf", ("train_fraction", "finite")),
    ("train_fraction=0", ("train_fraction",)),
    ("seed=1.5", ("seed", "int")),
]


@pytest.mark.parametrize("setting,words", REFUSED, ids=[s for s, _ in REFUSED])
def test_a_setting_that_cannot_work_is_refused_up_front(setting, words, cli):
    cli("train", "--set", setting, words=words)


def test_flags_are_checked_like_settings(cli):
    cli("train", "--seed", "99999999999999999999", words=("seed",))
    cli("train", "--seed", "-5", words=("seed",))
    cli("train", "--epochs", "-1", words=("epochs",))
    cli("train", "--epochs", "0", words=("epochs",))
    cli("train", "--epochs", "99999999999999", words=("epochs", "2147483647"))


def test_pretraining_settings_too(cli):
    cli("pretrain", "--set", "mask_p=nan", words=("mask_p", "finite"))
    cli("pretrain", "--set", "aap_weight=inf", words=("aap_weight", "finite"))
    cli("pretrain", "--set", "seed=99999999999999999999", words=("seed",))
    cli("pretrain", "--set", "n_layers=100000", words=("n_layers",))
    cli("pretrain", "--set", "learning_rate=0.1", words=("'learning_rate'", "did you mean 'lr'?"))


def test_model_hyper_parameters_are_bounded(cli):
    cli("train", "--model", "caser", "--set", "L=100000000", words=("L and T",))
    cli("train", "--model", "hgn", "--set", "T=0", words=("L and T",))
    cli("train", "--model", "autoint", "--set", "att_layers=100000", words=("att_layers",))
    cli("train", "--model", "bert4rec", "--set", "mask_p=inf", words=("mask_p", "finite"))


def test_a_model_too_big_for_the_memory_is_refused_before_it_is_built(cli):
    # within every limit, but 3 TiB of parameters: no machine running this has that much
    line = cli("train", "--set", "hidden_size=16384", "--set", "n_layers=256", "--set", "n_heads=1")
    assert "the model does not fit in memory" in line and "GiB of parameters" in line


def test_the_memory_estimate(monkeypatch):
    from s3rec.models.encoder import EncoderConfig, SequenceEncoder

    for enc in (EncoderConfig(), EncoderConfig(hidden_size=16, n_layers=3, n_heads=4, max_len=7, pre_ln=True)):
        built = SequenceEncoder(30, enc)
        assert enc.n_parameters(30) == sum(p.numel() for p in built.parameters())
    monkeypatch.setattr(config, "device_memory", lambda device: 2**30)  # a 1 GiB machine
    TrainConfig().validate()  # the paper's model: a few hundred KiB
    with pytest.raises(ConfigError, match=r"does not fit in memory: 4\.7 GiB of parameters.*has 1\.0 GiB"):
        with_overrides(TrainConfig(), {"hidden_size": 1024, "n_layers": 100}).validate()
    monkeypatch.setattr(config, "device_memory", lambda device: None)  # unknown: not refused
    with_overrides(TrainConfig(), {"hidden_size": 1024, "n_layers": 100}).validate()


def test_the_item_table_counts_when_the_model_is_built(tiny_data, monkeypatch):
    from s3rec.data import registry
    from s3rec.pretraining import Pretrainer
    from s3rec.train import build

    ds = registry.load("Tiny", tiny_data)
    cfg, pre = TrainConfig().validate(), PretrainConfig().validate()
    without, with_items = 4 * cfg.encoder().n_parameters(0), 4 * cfg.encoder().n_parameters(ds.n_items)
    assert with_items - without == 4 * 64 * ds.n_items  # the rows of the item table
    monkeypatch.setattr(config, "device_memory", lambda device: (without + with_items) // 2)
    TrainConfig().validate()  # the settings alone fit
    for make in (lambda: build(cfg, ds), lambda: Pretrainer(pre, ds)):
        with pytest.raises(ConfigError, match=rf"does not fit in memory: .*{ds.n_items} items\)"):
            make()
    monkeypatch.setattr(config, "device_memory", lambda device: with_items)  # exactly enough
    build(cfg, ds)


def test_the_limits_themselves_are_accepted():
    cfg = with_overrides(TrainConfig(), {"seed": SEED_MAX, "fraction_seed": SEED_MAX, "batch_size": LIMITS["batch_size"],
                                         "n_negatives": LIMITS["n_negatives"], "max_len": 1000}).validate()
    assert cfg.seed == SEED_MAX
    assert with_overrides(TrainConfig(), {"seed": 0, "lr": "1e-5"}).validate().lr == 1e-5


# (the unknown name given, the suggestion)
DID_YOU_MEAN = [
    ("learning_rate", "lr"), ("num_layers", "n_layers"), ("num_heads", "n_heads"), ("maxlen", "max_len"),
    ("max_seq_length", "max_len"), ("train_batch_size", "batch_size"), ("hidden_units", "hidden_size"),
    ("embedding_size", "hidden_size"), ("dropout", "hidden_dropout"), ("num_epochs", "epochs"),
    ("pateince", "patience"), ("LR", "lr"), ("hiden_size", "hidden_size"),
]


@pytest.mark.parametrize("name,meant", DID_YOU_MEAN, ids=[n for n, _ in DID_YOU_MEAN])
def test_an_unknown_setting_gets_a_did_you_mean(name, meant, cli):
    line = cli("train", "--set", f"{name}=1", words=(f"unknown setting {name!r} (did you mean {meant!r}?)",))
    assert "known:" not in line  # the suggestion, not the whole list


def test_an_unknown_setting_far_from_any_lists_them(cli):
    line = cli("train", "--set", "zzzz=1", words=("unknown setting 'zzzz'", "known:", "lr"))
    assert "did you mean" not in line


def test_model_names_and_hyper_parameters_get_one_too(cli):
    cli("train", "--model", "sasrek", words=("unknown model 'sasrek' (did you mean 'sasrec'?)",))
    cli("train", "--model", "gru4recf", words=("did you mean",))
    cli("train", "--model", "caser", "--set", "n_hh=3", words=("'n_hh' (did you mean 'n_h'?)",))


def test_the_api_and_config_json_take_the_same_checks(tiny_data, tmp_path):
    from s3rec.api import finetune

    with pytest.raises(ConfigError, match="lr"):
        finetune("Tiny", out=tmp_path / "out", lr=float("inf"))
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        finetune("Tiny", out=tmp_path / "out", learning_rate=0.1)
    with pytest.raises(ConfigError, match="seed"):
        finetune("Tiny", out=tmp_path / "out", seed=2**40)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="finite"):
        config_from_json('{"lr": Infinity}')
    with pytest.raises(ConfigError, match="finite"):
        config_from_json('{"mask_p": NaN}', PretrainConfig)
    with pytest.raises(ConfigError, match="n_layers"):
        config_from_json('{"n_layers": 100000}')
    with pytest.raises(ConfigError, match="finite"):
        with_overrides(TrainConfig(), {"lr": 10**400})  # an int too large for a float
