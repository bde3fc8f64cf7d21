"""Runs every ```python block of docs/walkthrough.md, in order, as one script,
so the walkthrough's claims are checked on every test run."""
import os
import re

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "walkthrough.md")


def blocks():
    with open(DOC) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_walkthrough_has_snippets_for_each_section():
    assert len(blocks()) >= 12


def test_walkthrough_snippets_run():
    namespace = {"__name__": "walkthrough"}
    for k, code in enumerate(blocks()):
        try:
            exec(compile(code, f"{DOC}:block{k + 1}", "exec"), namespace)
        except Exception as exc:                            # name the block that failed
            raise AssertionError(f"walkthrough block {k + 1} failed: {type(exc).__name__}: {exc}\n{code}") from exc
def test_walkthrough_figures_exist():
    with open(DOC) as f:
        figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", f.read())
    assert figures
    missing = [p for p in figures if not os.path.exists(os.path.join(os.path.dirname(DOC), p))]
    assert not missing, f"figures referenced but not generated: {missing} (python docs/make_figures.py)"
