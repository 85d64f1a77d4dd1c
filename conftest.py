"""Run every Python code block in the docs, the README and the docstrings as a test.

An example that rots fails the suite. Each document's blocks share one
namespace, in order, as a reader would run them.
"""

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md", "*.py"],
    excludes=["conftest.py", "test_*.py", "__init__.py"],
).pytest()
