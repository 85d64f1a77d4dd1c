"""Persistence: repositories and units of work over SQLAlchemy and in memory.

The query layer comes first: `buttress.domain.F` specifications and ``order_by``
field lists compile here (``buttress.persistence._query``) into SQLAlchemy
clauses checked against a model's mapped columns. The repository and unit of
work protocols and their SQLAlchemy and in-memory implementations build on it.
"""

__all__: list[str] = []
