"""The documentation stands on its own: it points only inside the repository.

* Every relative Markdown link in a tracked ``.md`` file names a file or folder
  of the repository that exists, and a ``#fragment`` into a Markdown file names
  one of its headings (GitHub's anchors).
* No tracked text file (code, docs, configs) sends the reader to a design note outside
  the repository or to the build machine's folders, or cites an issue tracker's numbers:
  the reasoning lives in ``docs/`` (:func:`outside_references`).
* ``docs/ARCHITECTURE.md`` names real code: every repository path it quotes
  exists, and every dotted name of a package (``edge.hall.Hall.call_next``)
  imports and resolves, so the keypad walk cannot drift from the code unnoticed.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"

OUTSIDE_REFERENCES = ("DESIGN.md", "../shared", "/work/")
"""The team's design note, a folder beside the repository, the build machine's folders."""
_ISSUE_NUMBER = re.compile(r"(?i)\bissues?\s*#\s*\d+|\bissue\s+\d+\b")
_HASH_NUMBER = re.compile(r"(?<![\w&/'\"=(\[`])#\d{1,3}\b")
"""``#12`` in prose (Markdown outside code blocks): how trackers number issues."""
_TEXT_SUFFIXES = (".py", ".pyx", ".pxd", ".md", ".toml", ".j2", ".yml", ".yaml", ".cfg",
                  ".ini", ".sh", ".html", ".js", ".css", ".txt", ".rules", ".service")
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()

PACKAGES = ("firmware_protocols", "fastpath", "edge", "central", "onedoor")

_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CODE = re.compile(r"`([^`\n]+)`")
_DOTTED = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
_FILE_SUFFIXES = {"py", "md", "toml", "csv", "yml", "yaml", "json", "js", "html", "j2", "pyx"}
_NOT_A_PATH = re.compile(r"[\s{}<>*+#$…]")


def tracked(*patterns: str) -> list[Path]:
    """The files git tracks in this checkout that match the patterns."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", *patterns], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    return [REPO / name for name in listed.split("\0") if name]


def tracked_markdown() -> list[Path]:
    return tracked("*.md")


def outside_references(name: str, text: str) -> list[str]:
    """Where a text points outside the repository or cites an issue number."""
    found = []
    prose = _ISSUE_NUMBER.sub("", without_code_blocks(text)) if name.endswith(".md") else ""
    for number, line in enumerate(text.splitlines(), 1):
        found += [f"{name}:{number}: {ref}" for ref in OUTSIDE_REFERENCES if ref in line]
        found += [f"{name}:{number}: {m.group()}" for m in _ISSUE_NUMBER.finditer(line)]
    found += [f"{name}: {m.group()} (an issue number?)" for m in _HASH_NUMBER.finditer(prose)]
    return found


def without_code_blocks(text: str) -> str:
    return _FENCE.sub("", text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text without links, code marks and
    punctuation, lower case, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> frozenset[str]:
    """The anchors of a Markdown text's headings (a repeated heading gets ``-1``, ``-2``...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in _HEADING.finditer(without_code_blocks(text)):
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return frozenset(found)


@cache
def file_anchors(path: Path) -> frozenset[str]:
    return anchors(path.read_text("utf-8"))


def link_problems(source: Path, text: str, root: Path = REPO) -> list[str]:
    """What is wrong with the relative links of one Markdown text (empty: nothing)."""
    problems = []
    for match in _LINK.finditer(without_code_blocks(text)):
        target = match.group(1)
        if _SCHEME.match(target):
            continue  # https:, mailto: ...
        path_part, _, fragment = target.partition("#")
        where = f"{source.relative_to(root)}: ({target})"
        if not path_part:
            if fragment not in anchors(text):
                problems.append(f"{where} names no heading of its own file")
            continue
        resolved = (source.parent / path_part).resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{where} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where} names a file that does not exist")
        elif fragment and resolved.suffix == ".md" and fragment not in file_anchors(resolved):
            problems.append(f"{where} names no heading of {resolved.relative_to(root)}")
    return problems


def quoted_paths(text: str) -> Iterable[str]:
    """Code spans that read as a path inside the repository (``edge/hall.py``)."""
    top = {entry.name for entry in REPO.iterdir() if entry.is_dir()}
    for span in _CODE.findall(text):
        if "/" in span and not _NOT_A_PATH.search(span) and span.split("/")[0] in top:
            yield span


def quoted_names(text: str) -> Iterable[str]:
    """Code spans that read as a dotted name of one of the packages."""
    for span in _CODE.findall(text):
        if _DOTTED.match(span) and span.rsplit(".", 1)[1] not in _FILE_SUFFIXES:
            yield span


def resolve(dotted: str) -> object:
    """The object a dotted name stands for: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            found: object = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise  # a dependency missing inside a module that exists
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


# --- the checks ----------------------------------------------------------------------------------
def test_markdown_links_name_files_and_headings_that_exist() -> None:
    files = tracked_markdown()
    assert REPO / "README.md" in files
    assert ARCHITECTURE in files
    problems = [p for path in files for p in link_problems(path, path.read_text("utf-8"))]
    assert problems == []


def test_nothing_tracked_points_outside_the_repository_or_cites_an_issue() -> None:
    files = [path for path in tracked() if path.suffix in _TEXT_SUFFIXES or path.name == "Makefile"]
    assert len(files) > 300
    found = []
    for path in files:
        name = path.relative_to(REPO).as_posix()
        if name != THIS_FILE:  # it names what it looks for
            found += outside_references(name, path.read_text("utf-8", errors="replace"))
    assert found == [], "point into docs/ (docs/ARCHITECTURE.md) instead"


def test_the_readme_points_to_the_architecture() -> None:
    assert "(docs/ARCHITECTURE.md)" in (REPO / "README.md").read_text("utf-8")


def test_every_path_the_architecture_quotes_exists() -> None:
    paths = list(quoted_paths(ARCHITECTURE.read_text("utf-8")))
    assert len(paths) > 50  # the document quotes its sources; a broken pattern finds none
    assert [p for p in paths if not (REPO / p).exists()] == []


def test_every_name_the_architecture_quotes_is_in_the_code() -> None:
    names = sorted(set(quoted_names(ARCHITECTURE.read_text("utf-8"))))
    assert len(names) > 50
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{name}: {exc}")
    assert missing == []


# --- the checker itself --------------------------------------------------------------------------
def test_the_link_check_finds_each_kind_of_problem(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A title, with `code`\n\n## Two\n", "utf-8")
    source = tmp_path / "README.md"
    text = ("[ok](docs/a.md) [ok](docs/a.md#a-title-with-code) [ok](#top) [web](https://x.cn)\n"
            "[gone](docs/b.md) [no heading](docs/a.md#three) [out](../shared/DESIGN.md) [x](#two)\n"
            "```\n[in a code block](nowhere.md)\n```\n# Top\n")
    assert link_problems(source, text, root=tmp_path) == [
        "README.md: (docs/b.md) names a file that does not exist",
        "README.md: (docs/a.md#three) names no heading of docs/a.md",
        "README.md: (../shared/DESIGN.md) points outside the repository",
        "README.md: (#two) names no heading of its own file",
    ]


def test_outside_references_and_issue_numbers_are_found() -> None:
    text = ("See ../shared/DESIGN.md.\nFixed in issue #9 and issue 12; terminal #3.\n"
            "[link](#1-escpos) colour #fff, `#4` and\n```\n窗口1 #1\n```\n")
    assert outside_references("a.md", text) == [
        "a.md:1: DESIGN.md", "a.md:1: ../shared", "a.md:2: issue #9", "a.md:2: issue 12",
        "a.md: #3 (an issue number?)",
    ]
    assert outside_references("a.py", "x = '#3'  # see /work/main\n") == ["a.py:1: /work/"]


def test_quoted_names_and_paths_are_told_apart() -> None:
    text = ("`edge.hall.Hall.call_next` `central.toml` `edge/hall.py` `onedoor/v1/{site}/ack` "
            "`edge/devices/<family>.py` `Hall.call_next` `fastpath.nowhere`")
    assert list(quoted_names(text)) == ["edge.hall.Hall.call_next", "fastpath.nowhere"]
    assert list(quoted_paths(text)) == ["edge/hall.py"]
    with pytest.raises(AttributeError):
        resolve("fastpath.nowhere")
    with pytest.raises(AttributeError):
        resolve("edge.hall.Hall.no_such_method")
