"""Edges of relationship loading that the contract suite reaches only in part.

Each test runs on every backend of ``make_sync_uow``: the in-memory twin must
refuse what SQLAlchemy's repositories refuse, with the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from buttress.errors import QueryError
from buttress.testing import ContractProduct


@pytest.mark.parametrize(
    "load",
    ["", "batches..allocations", ".batches", "batches.", ("batches", 3)],
    ids=["empty", "empty-step", "leading-dot", "trailing-dot", "not-text"],
)
def test_a_malformed_load_path_is_refused_by_name(
    make_sync_uow: Callable[..., Any], load: object
) -> None:
    with (
        make_sync_uow() as uow,
        pytest.raises(QueryError, match="is not a relationship path: name relationships"),
    ):
        uow.repository(ContractProduct).find(load=load)


def test_an_unknown_step_lists_the_relationships_there_are(
    make_sync_uow: Callable[..., Any],
) -> None:
    with (
        make_sync_uow() as uow,
        pytest.raises(
            QueryError,
            match=r"in the path 'batchs'\); its relationships are: batches, detail, labels$",
        ),
    ):
        uow.repository(ContractProduct).find(load="batchs")
