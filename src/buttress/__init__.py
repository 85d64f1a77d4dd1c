"""Buttress: backend architectural building blocks for sync and asyncio Python.

The blocks live in their own packages and are imported from there:
`buttress.persistence`, `buttress.resilience`, `buttress.caching`, `buttress.di`,
`buttress.domain`, `buttress.errors` and `buttress.settings`. Importing
`buttress` itself is cheap: it loads no database, Redis or dependency-injection
library.
"""

from buttress.errors import ButtressError

__version__ = "0.1.0.dev0"

__all__ = ["ButtressError", "__version__"]
