"""The docs hold together: every relative link leads to a file, folder or heading of the repository,
and the README stays a short front page that links every page of docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *DOCS]
README_MAX_LINES = 200


def _ids(pages: list[Path]) -> list[str]:
    return [page.relative_to(ROOT).as_posix() for page in pages]


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where a `[x](y)` is not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "code", text)


def links(text: str) -> list[str]:
    """The targets of the text's inline markdown links."""
    return re.findall(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)", prose(text))


def relative_links(page: Path) -> list[str]:
    """The page's links that are not URLs (http:, https:, mailto: ...)."""
    targets = links(page.read_text(encoding="utf-8"))
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_the_link_parser_finds_links_outside_code_only():
    text = "[a](x.md) [`b`](y/) `[c](z.md)`\n```\n[d](w.md)\n```\n[e](https://e.example) [f](#g)\n"
    assert links(text) == ["x.md", "y/", "https://e.example", "#g"]


def test_github_anchors_drop_punctuation_and_number_repeats(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Faults: every error path on demand\n## Options\n```sh\n# not a heading\n```\n## Options\n"
    )
    assert anchors(page) == {"faults-every-error-path-on-demand", "options", "options-1"}


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_relative_link_of_the_page_leads_to_something_in_the_repository(page):
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{target}: no {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


def test_the_readme_is_a_short_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move some into docs/"


def test_the_readme_links_every_page_of_the_docs():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in relative_links(ROOT / "README.md")}
    assert [page for page in DOCS if page.resolve() not in linked] == []
