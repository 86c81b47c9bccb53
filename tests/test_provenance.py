"""Provenance of a run (``s3rec.provenance``): the commit is s3rec's own or nothing."""

from __future__ import annotations

import subprocess

import s3rec.provenance as provenance


def test_the_commit_is_only_reported_for_s3recs_own_checkout(monkeypatch, tmp_path):
    # a git repository that is not s3rec's (a virtual environment inside someone's project): no commit
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "s3rec").mkdir()
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path / "s3rec")
    assert provenance.source_commit() is None
    # not a git repository at all: no commit
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path.parent / "nowhere-s3rec")
    assert provenance.source_commit() is None


def test_a_checkout_reports_its_commit_and_whether_it_is_dirty(monkeypatch, tmp_path):
    pkg = tmp_path / "src" / "s3rec"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(provenance, "PACKAGE_DIR", pkg.resolve())
    assert provenance.source_commit() == head
    (pkg / "__init__.py").write_text("x = 2\n")
    assert provenance.source_commit() == head + "+dirty"


def test_environment_fields():
    env = provenance.environment("cpu")
    assert set(env) == {"s3rec", "commit", "python", "torch", "machine", "device", "argv", "time"}
    assert env["time"].endswith("+00:00")
