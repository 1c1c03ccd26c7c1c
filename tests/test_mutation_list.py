"""The mutation list of tests/mutations.py stays applicable: every pattern is found in today's src/
(a refactor that moves the code must move the pattern, or `make mutants` would report it stale)."""

from __future__ import annotations

import shutil

import mutations


def test_every_mutation_pattern_applies(tmp_path):
    assert len(mutations.MUTATIONS) >= 12
    for m in mutations.MUTATIONS:
        src = tmp_path / m.id
        shutil.copytree(mutations.REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        assert mutations.apply(m, src) is None, m.id
        changed = [f for f, _, _ in m.edits if (src / "inpo" / f).read_text() != (mutations.REPO / "src" / "inpo" / f).read_text()]
        assert changed, f"{m.id}: the mutation changes nothing"
