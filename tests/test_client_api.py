"""ZenML-compatible reading of runs: Client keywords, pipelines vs one-step runs, Model."""

from __future__ import annotations

import pytest

from dynpipe import Client, Model, pipeline, step

pytestmark = pytest.mark.usefixtures("backend")  # every test on SQLite and on PostgreSQL


@step(enable_cache=False)
def one() -> int:
    return 1


def test_a_step_called_alone_is_not_a_run_of_the_pipeline_with_its_name() -> None:
    @step
    def train() -> int:
        return 1

    @pipeline(dynamic=True, name="train")
    def train_pipeline() -> None:
        train()

    listed = train_pipeline()
    assert train() == 1  # a one-step run named after the step
    client = Client()
    assert client.get_pipeline("train").last_run.id == listed.id
    assert [r.id for r in client.get_pipeline("train").runs] == [listed.id]
    with pytest.raises(KeyError, match="no pipeline named 'alone'"):

        @step
        def alone() -> int:
            return 0

        alone()
        client.get_pipeline("alone")


def test_list_pipeline_runs_takes_zenml_keywords() -> None:
    @pipeline(dynamic=True)
    def listed() -> None:
        one()

    first, second, third = listed(), listed(), listed()
    client = Client()
    assert [r.id for r in client.list_pipeline_runs(pipeline_name="listed", size=2)] == [third.id, second.id]
    assert [r.id for r in client.list_pipeline_runs(pipeline_name="listed", sort_by="asc:created")] == [
        first.id, second.id, third.id,
    ]
    assert [r.id for r in client.list_pipeline_runs(name=second.name)] == [second.id]
    with pytest.raises(ValueError, match="sort_by 'name'"):
        client.list_pipeline_runs(sort_by="name")


def test_pipeline_model_is_recorded_with_the_run() -> None:
    @pipeline(dynamic=True, model=Model(name="customer_churn", version="production", tags=["classification"]))
    def churn() -> None:
        one()

    run = churn()
    assert run.config["model"] == {"name": "customer_churn", "version": "production", "tags": ["classification"]}
