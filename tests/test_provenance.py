"""Provenance of a run (``s3rec.provenance``): the commit is s3rec's own or nothing, and never an error."""

from __future__ import annotations

import subprocess

import s3rec.provenance as provenance


def _repo(path):
    git = ["git", "-C", str(path), "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return git


def _commit(git, message="c"):
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", message], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_another_repository_or_none_gives_no_commit(monkeypatch, tmp_path):
    # a package inside a git repository that is not s3rec's (a virtual environment in someone's project)
    git = _repo(tmp_path)
    (tmp_path / "venv" / "s3rec").mkdir(parents=True)
    (tmp_path / "venv" / "s3rec" / "__init__.py").write_text("x = 1\n")
    _commit(git)
    monkeypatch.setattr(provenance, "PACKAGE_DIR", (tmp_path / "venv" / "s3rec").resolve())
    assert provenance.source_commit() is None
    # not in a git repository at all
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path.parent / "nowhere-s3rec")
    assert provenance.source_commit() is None


def test_a_checkout_reports_its_commit_and_whether_its_code_is_dirty(monkeypatch, tmp_path):
    pkg = tmp_path / "src" / "s3rec"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "report.md").write_text("a\n")
    git = _repo(tmp_path)
    head = _commit(git)
    monkeypatch.setattr(provenance, "PACKAGE_DIR", pkg.resolve())
    assert provenance.source_commit() == head
    (tmp_path / "docs" / "report.md").write_text("b\n")  # results written while a grid runs: not the code
    assert provenance.source_commit() == head
    (pkg / "__init__.py").write_text("x = 2\n")
    assert provenance.source_commit() == head + "+dirty"


def test_no_git_gives_no_commit_and_the_environment_still_comes(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert provenance.source_commit() is None
    env = provenance.environment("cpu")
    assert env["commit"] is None and env["torch"]


def test_an_unexpected_error_never_reaches_the_run(monkeypatch):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(provenance, "source_commit", broken)
    assert provenance.environment("cpu")["commit"] is None


def test_environment_fields():
    env = provenance.environment("cpu")
    assert set(env) == {"s3rec", "commit", "python", "torch", "machine", "device", "argv", "time"}
    assert env["time"].endswith("+00:00")
