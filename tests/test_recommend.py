"""Recommendations and the HTTP service, end to end on tiny data: original ids out, history excluded,
the same ranking as the evaluation path, bounded chunks, and a service that answers bad input with 4xx."""

from __future__ import annotations

import csv
import http.client
import io
import json
import threading

import numpy as np
import pytest
import torch

from s3rec.cli import main
from s3rec.data.negatives import load_with_negatives
from s3rec.data.batches import SequenceTensors
from s3rec.evaluation import score_users
from s3rec.recommend import Recommender


@pytest.fixture
def trained(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "Tiny", "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    return out / "best.pt"


def test_recommend_matches_the_evaluation_scores(trained):
    rec = Recommender.load(trained)
    ds = rec.ds
    st = SequenceTensors(ds)
    users = torch.arange(ds.n_users)
    scores = score_users(rec.model, st, users, "test")  # history s[:-1], built by the evaluation path
    for u in range(0, ds.n_users, 7):
        history = ds.sequence(u)[:-1]
        s = scores[u].clone()
        s[0] = s[ds.n_items + 1] = float("-inf")
        s[torch.from_numpy(history)] = float("-inf")
        expected = torch.topk(s, 5).indices.tolist()
        got = rec.recommend([str(i) for i in history], k=5)
        assert [int(i) for i, _ in got] == expected
        assert np.allclose([sc for _, sc in got], s[expected].numpy(), atol=1e-5)
        assert not set(int(i) for i, _ in got) & set(history.tolist())  # history excluded


def test_keep_history_and_chunking_give_the_same_answers(trained):
    rec = Recommender.load(trained)
    everyone = rec.recommend_users(k=4)
    rec.chunk_cells = 3 * (rec.ds.n_items + 2)  # three users per chunk
    chunked = rec.recommend_users(k=4)
    assert chunked.keys() == everyone.keys()
    for u, top in everyone.items():  # same items; scores equal up to float rounding (other packing)
        assert [i for i, _ in chunked[u]] == [i for i, _ in top]
        assert np.allclose([s for _, s in chunked[u]], [s for _, s in top], atol=1e-5)
    assert len(everyone) == rec.ds.n_users
    first = next(iter(everyone))
    kept = rec.recommend_users([first], k=rec.ds.n_items, exclude_history=False)[first]
    assert len(kept) == rec.ds.n_items  # every item, history included, padding and mask never


def test_load_takes_a_run_folder_as_well_as_its_checkpoint(trained, tmp_path):
    from s3rec.errors import CheckpointError

    by_file, by_folder = Recommender.load(trained), Recommender.load(trained.parent)
    assert by_folder.info() == by_file.info()
    history = [str(i) for i in by_file.ds.sequence(0)[:-1].tolist()]
    assert by_folder.recommend(history, k=5) == by_file.recommend(history, k=5)
    assert by_folder.user_names == by_file.user_names and by_folder.maps is None  # benchmark files: no id maps
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="best.pt"):  # a folder without one: the file it looked for
        Recommender.load(tmp_path / "empty")


def test_unknown_items_and_users_are_clear_errors(trained):
    from s3rec.errors import S3RecError
    from s3rec.recommend import UnknownItemsError

    rec = Recommender.load(trained)
    with pytest.raises(UnknownItemsError, match="unknown item id.*'nope'"):
        rec.recommend(["1", "nope"])
    with pytest.raises(S3RecError, match="unknown user"):
        rec.recommend_users(["no-such-user"])
    with pytest.raises(S3RecError, match="empty"):
        rec.recommend([])


def test_imported_csv_trains_evaluates_and_recommends_in_original_ids(tmp_path, monkeypatch, capsys):
    from s3rec.data.synthetic import synthetic_log, write_csv

    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    log = synthetic_log(n_users=60, n_items=150, n_interactions=900, seed=0)
    write_csv(log, tmp_path / "shop.csv")
    data = tmp_path / "data"
    assert main(["data", "import", str(tmp_path / "shop.csv"), "--name", "Shop", "--out", str(data), "--no-dedup"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--dataset", "Shop", "--data-dir", str(data), "--epochs", "2", "--quiet",
                 "--protocol", "full", "--out", str(run)]) == 0
    assert json.loads((run / "results.json").read_text())["test"]["NDCG@10"] >= 0
    capsys.readouterr()
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(run / "best.pt"), "--data-dir", str(data), "-k", "3", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    originals_users = {str(u) for u in log["user"].tolist()}
    originals_items = {str(i) for i in log["item"].tolist()}
    n_users = len((data / "Shop.txt").read_text().splitlines())  # those that survive the 5-core filter
    assert {r["user"] for r in rows} <= originals_users and len({r["user"] for r in rows}) == n_users > 50
    assert {r["item"] for r in rows} <= originals_items
    assert {r["rank"] for r in rows} == {"1", "2", "3"}
    # a user's own items are never recommended (the history is excluded), in original ids
    u = rows[0]["user"]
    own = {str(i) for i in log["item"][log["user"] == int(u)].tolist()}
    assert not own & {r["item"] for r in rows if r["user"] == u}
    assert main(["recommend", str(run / "best.pt"), "--data-dir", str(data), "-k", "2", "--format", "jsonl",
                 "--users", u]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["user"] == u and len(line["items"]) == 2 and line["items"][0] in originals_items
    # without --data-dir: the folder the run was trained on (its results.json), not $S3REC_DATA_DIR's search
    assert main(["recommend", str(run), "-k", "2", "--format", "jsonl", "--users", u]) == 0
    assert json.loads(capsys.readouterr().out) == line


def test_recommend_cli_errors(trained, tmp_path, capsys):
    assert main(["recommend", str(tmp_path / "missing.pt")]) == 2
    assert main(["recommend", str(trained), "--users", "nobody"]) == 2
    assert "unknown user" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.csv"))


def _request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    return r.status, data


def test_service_answers_and_rejects(trained):
    from s3rec.serve import make_server

    rec = Recommender.load(trained)
    server = make_server(rec, "127.0.0.1", 0)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert _request(port, "GET", "/health") == (200, {"status": "ok"})
        status, info = _request(port, "GET", "/info")
        assert status == 200 and info["model"] == "sasrec" and info["items"] == rec.ds.n_items
        history = [str(i) for i in rec.ds.sequence(0)[:-1].tolist()]
        status, ans = _request(port, "POST", "/recommend", json.dumps({"history": history, "k": 5}))
        assert status == 200 and [i for i, _ in rec.recommend(history, 5)] == ans["items"]
        status, ans = _request(port, "POST", "/recommend", json.dumps({"user": rec.user_names[0], "k": 3}))
        assert status == 200 and len(ans["items"]) == 3
        for body, code in [("{bad", 400), (json.dumps({"history": ["999999"]}), 422),
                           (json.dumps({"history": ["1"] * 20_000}), 413), (json.dumps({"user": "ghost"}), 422),
                           (json.dumps({"history": ["1"], "k": 0}), 400)]:
            status, ans = _request(port, "POST", "/recommend", body)
            assert status == code and ans["error"], (body[:30], status, ans)
        assert _request(port, "GET", "/nope")[0] == 404
        assert _request(port, "POST", "/nope", "{}")[0] == 404
        assert _request(port, "GET", "/health")[0] == 200  # still alive after the bad requests
    finally:
        server.shutdown()
        server.server_close()


def test_full_evaluation_in_small_chunks_gives_the_same_metrics(trained, monkeypatch):
    import s3rec.evaluation as ev

    rec = Recommender.load(trained)
    whole = ev.evaluate(rec.model, rec.ds, "test", "full")[0]
    monkeypatch.setattr(ev, "FULL_CHUNK_CELLS", 3 * (rec.ds.n_items + 2))  # three users per chunk
    chunked = ev.evaluate(rec.model, rec.ds, "test", "full")[0]
    assert chunked == pytest.approx(whole, abs=1e-6)


def test_evaluation_on_a_user_subset_equals_those_users_ranks(trained):
    from s3rec.evaluation import evaluate_ranks
    from s3rec.train import validation_users

    rec = Recommender.load(trained)
    ds = load_with_negatives("Tiny", quiet=True)
    every, _ = evaluate_ranks(rec.model, ds, "valid", "sampled")
    rows = validation_users(ds.n_users, 11)
    assert len(rows) == 11 and torch.equal(rows, validation_users(ds.n_users, 11))  # fixed subset
    assert validation_users(ds.n_users, 0) is None and validation_users(ds.n_users, ds.n_users) is None
    for protocol in ("sampled", "full"):
        all_ranks, _ = evaluate_ranks(rec.model, ds, "valid", protocol)
        part, info = evaluate_ranks(rec.model, ds, "valid", protocol, users=rows)
        assert info["users"] == 11 and torch.equal(part, all_ranks[rows])
    assert torch.equal(every, evaluate_ranks(rec.model, ds, "valid", "sampled")[0])


def test_valid_users_setting_trains_and_tests_on_everyone(tiny_data, tmp_path):
    out = tmp_path / "sub"
    assert main(["train", "--dataset", "Tiny", "--epochs", "2", "--quiet", "--set", "valid_users=10",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["valid_users"] == 10
    assert len(np.load(out / "test_ranks.npy")) == 40  # test: every user


def test_recommend_never_writes_over_an_input_or_a_file_of_yours(trained, tmp_path, capsys):
    before = trained.read_bytes()
    for out in (trained, trained.parent):  # the checkpoint itself; its folder
        assert main(["recommend", str(trained.parent), "--out", str(out), "--force"]) == 2
        assert "--out" in capsys.readouterr().err
    assert trained.read_bytes() == before
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    assert main(["recommend", str(trained), "-k", "2", "--out", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an s3rec recommend output" in err[0] and "--force" in err[0]
    assert mine.read_text() == "a,b\n1,2\n"
    seqs = trained.parent.parent / "data" / "Tiny.txt"  # the dataset's own file is an input too
    assert main(["recommend", str(trained), "--out", str(seqs), "--force"]) == 2
    assert "is an input" in capsys.readouterr().err
    # an earlier output of the command is replaced without --force; another file with it
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"recs.{fmt}"
        assert main(["recommend", str(trained), "-k", "2", "--format", fmt, "--out", str(out)]) == 0
        assert main(["recommend", str(trained), "-k", "3", "--format", fmt, "--out", str(out)]) == 0
    assert main(["recommend", str(trained), "-k", "2", "--out", str(mine), "--force"]) == 0
    assert mine.read_text().startswith("user,rank,item,score\n")


def test_a_data_dir_that_does_not_exist_is_an_error(trained, tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert main(["train", "--dataset", "Tiny", "--data-dir", str(missing), "--quiet", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "no such folder" in err[0]
    assert not (tmp_path / "r").exists()
