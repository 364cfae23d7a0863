"""The metadata interface: SQLite implements all of it, with plain records only."""

from __future__ import annotations

import dataclasses
import inspect
import sqlite3
import typing

import pytest
from backends import Backend

from dynpipe import pipeline, step
from dynpipe.store import backend as backend_module
from dynpipe.store import records, summary_records
from dynpipe.store.backend import MetadataBackend
from dynpipe.store.metadata import MetadataStore
from dynpipe.store.postgres import PostgresMetadata
from dynpipe.store.records import RunFilter
from dynpipe.store.store import open_store


def _protocol_methods() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(MetadataBackend).items()
        if inspect.isfunction(fn) and not name.startswith("_")
    }


@pytest.mark.parametrize("implementation", [MetadataStore, PostgresMetadata])
def test_both_stores_implement_every_method_of_the_interface_with_its_signature(implementation: type) -> None:
    methods = _protocol_methods()
    assert "finish_step_run" in methods and "record_heartbeat" in methods and "schema_version" in methods
    for name, sig in methods.items():
        impl = getattr(implementation, name, None)
        assert impl is not None, f"{implementation.__name__} lacks {name}"
        assert list(inspect.signature(impl).parameters) == list(sig.parameters), name


def test_no_driver_type_crosses_the_interface() -> None:
    for name, fn in vars(MetadataBackend).items():
        if inspect.isfunction(fn):
            namespace = {**vars(backend_module), **vars(records), **vars(summary_records)}  # TYPE_CHECKING names
            hints = typing.get_type_hints(fn, namespace)
            assert "sqlite" not in str(hints).lower() and "psycopg" not in str(hints).lower(), name


def test_reads_return_plain_records_and_map_step_runs_to_run_names(backend: Backend) -> None:
    @step(enable_cache=False)
    def one() -> int:
        return 1

    @pipeline(run_name="the-run")
    def p() -> None:
        one()

    p()
    md = open_store().metadata
    (run,) = md.list_runs(RunFilter(name="the-run"))
    assert dataclasses.is_dataclass(run) and not isinstance(run, (sqlite3.Row, dict))
    assert md.location().startswith("postgresql://" if backend.name == "postgres" else "sqlite://")
    (step_run,) = md.step_runs_of_run(run.id)
    assert step_run.status == "completed" and step_run.outputs
    assert md.run_names_of_step_runs([step_run.id, "nope"]) == {step_run.id: "the-run"}
    (art,) = md.artifacts_by_ids(step_run.outputs.values())
    assert art.version == 1 and art.producer_step_run_id == step_run.id
