"""The README and docs/ pages: short enough, every command in them parses, every link resolves, and the
repository explains itself without files outside it (no reference to sections of an outside spec)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINKED = [README, *PAGES, ROOT / "benchmarks" / "README.md"]
DOCUMENTED = [README, *PAGES]

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
# Markdown links [text](target) and images ![alt](target); the target ends at the first space or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _bash_lines(path: Path) -> list[str]:
    """The lines of the file's ```bash blocks, continuation lines joined."""
    lines = []
    for lang, body in FENCE.findall(path.read_text(encoding="utf-8")):
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        body = body.replace("\\\n", " ")
        lines.extend(line.strip() for line in body.splitlines() if line.strip())
    return lines


def _s3rec_argvs(line: str) -> list[list[str]]:
    """The argument vectors given to the s3rec command in one shell line: `s3rec ...`,
    `.venv/bin/s3rec ...` or `python -m s3rec ...` / `torchrun ... -m s3rec ...`, in each part of a
    `&&`, `||`, `;` or `|` chain; comments removed."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = list(lexer)
    argvs, part = [], []
    for word in [*words, ";"]:
        if word and set(word) <= set(";&|"):
            if part:
                for i, w in enumerate(part):
                    if w == "s3rec" or w.endswith("/bin/s3rec"):
                        if i == 0:
                            argvs.append(part[1:])
                        break
                    if w == "-m" and i + 1 < len(part) and part[i + 1] == "s3rec":
                        argvs.append(part[i + 2:])
                        break
            part = []
        else:
            part.append(word)
    return argvs


def _commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for path in DOCUMENTED:
        for line in _bash_lines(path):
            for argv in _s3rec_argvs(line):
                found.append((path.relative_to(ROOT).as_posix(), line, argv))
    return found


COMMANDS = _commands()


def test_readme_is_a_front_door():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 250, f"README.md has {n} lines (at most 250)"


def test_readme_first_lines_are_setup_and_tests():
    blocks = FENCE.findall(README.read_text(encoding="utf-8"))
    assert blocks and blocks[0][0] == "bash"
    first, second = [line for line in blocks[0][1].splitlines() if line.strip()][:2]
    assert "s3rec data fetch LastFM" in first and "s3rec run --dataset LastFM" in first
    # the second line is what CI runs
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert second.strip() in ci


def test_docs_have_commands():
    per_file = {name for name, _, _ in COMMANDS}
    assert "README.md" in per_file
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize("where,line,argv", COMMANDS, ids=[f"{w}:{' '.join(a[:3])}" for w, _, a in COMMANDS])
def test_documented_command_parses(where, line, argv):
    from s3rec.cli import build_parser

    parser = build_parser()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            parser.parse_args(argv)
        except SystemExit as stop:  # --help exits 0; a parse error exits 2
            assert stop.code == 0, f"{where}: `{line}` does not parse: {err.getvalue().strip()}"


def _links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = FENCE.sub("", text)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)  # nor do code spans
    return LINK.findall(text)


@pytest.mark.parametrize("path", LINKED, ids=[p.relative_to(ROOT).as_posix() for p in LINKED])
def test_relative_links_resolve(path):
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # an absolute URL (https:, mailto:) or an anchor in the same page
        file = target.split("#", 1)[0]
        if not (path.parent / file).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: links to missing files: {broken}"


def test_mkdocs_nav_names_existing_pages():
    nav = re.findall(r"^\s*-\s*[^:]+:\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    assert nav
    assert {p.name for p in PAGES} <= set(nav), "a docs/ page is missing from the mkdocs nav"
    missing = [page for page in nav if not (ROOT / "docs" / page).is_file()]
    assert not missing, f"mkdocs.yml names missing pages: {missing}"


def test_semantics_page_has_the_sections_code_points_at():
    text = (ROOT / "docs" / "semantics.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^##+ (.+?)\s*$", text, re.M))
    for name in ("Data", "Model", "Pre-training", "Fine-tuning", "Evaluation", "Baselines", "Experiments"):
        assert name in headings, f"docs/semantics.md has no heading {name!r}"


def _tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in names.decode("utf-8", "surrogateescape").split("\0"):
        path = ROOT / name
        if name and path.is_file():
            files.append(path)
    return files


def test_no_reference_to_files_outside_the_repository():
    needle = b"spec" + b" section"  # split, so that this file does not match itself
    hits = []
    for path in _tracked_text_files():
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        if needle in data.lower():
            hits.append(path.relative_to(ROOT).as_posix())
    said = needle.decode().upper().replace("SECTION", "section")
    assert not hits, f"{len(hits)} tracked files still say {said!r} (point at docs/semantics.md instead): {hits[:20]}"
