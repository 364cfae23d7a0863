"""An invocation: one call of a step inside a run, and the input sources that point at one."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..futures import SharedConditionFuture, StepRunFuture
from ..outputs import OutputArtifact, StepOutputs
from ..status import ExecutionStatus
from ..store.models import ArtifactVersion
from ..store.records import NewStepRun
from .context import RunContext
from .dag import NodeState
from .step_config import EffectiveStepConfig

if TYPE_CHECKING:
    from ..runtimes.base import Launch
    from ..steps import Step


class FutureOutput:
    """One named output of a submitted step; usable as a step input."""

    __slots__ = ("invocation", "output_name")

    def __init__(self, invocation: Invocation, output_name: str | None) -> None:
        self.invocation = invocation
        self.output_name = output_name

    def artifact(self) -> OutputArtifact:
        outputs = self.invocation.future.result()
        return self.invocation.pick_output(outputs, self.output_name)


#: What a finished invocation keeps of its inputs (``Invocation.release_inputs``).
NO_INPUTS: Mapping[str, Any] = MappingProxyType({})

#: What a step input can come from: an output of this run, a stored artifact, a future.
InputSource = OutputArtifact | ArtifactVersion | FutureOutput


#: The classes of step outputs and futures passed to a step (``isinstance`` checks them at once).
SOURCE_TYPES = (ArtifactVersion, FutureOutput, StepRunFuture)


def is_source(value: Any) -> bool:
    return isinstance(value, SOURCE_TYPES)


def is_step_output(value: Any) -> bool:
    """A future or artifact (or a list of them): data flow, not a plain parameter."""
    if isinstance(value, (list, tuple)) and value:
        return all(is_source(v) for v in value)
    return is_source(value)


class OutputsFuture(SharedConditionFuture):
    """An invocation's future: its result, the step's outputs by name, kept as ``StepOutputs``
    (a tuple, not the dict it is given: an open run keeps every step's)."""

    def set_result(self, result: Mapping[str, OutputArtifact]) -> None:
        super().set_result(StepOutputs(result))


def as_source(value: Any) -> Any:
    """A ``StepRunFuture`` as the engine's own reference to the output it stands for."""
    if isinstance(value, StepRunFuture):
        return FutureOutput(value.handle, value.output_name)  # type: ignore[arg-type]
    return value


class Invocation:
    """One call of a step inside a run, from submission to its recorded end.

    ``status`` is the engine's own record of where it is; only ``transitions.transition``
    changes it (under ``lock``), and with it the store, the DAG node and the future.
    """

    @property
    def lock(self) -> threading.Lock:
        """Guards ``status``: one lock per run (held for a compare-and-set only)."""
        return self.ctx.status_lock

    __slots__ = (
        "ctx", "step", "cfg", "invocation_id", "_parameters", "sources", "upstream", "deps",
        "future", "node", "step_run_id", "launch", "stop_reason", "started", "input_refs",
        "input_ids", "status", "abandoned", "_record",
    )

    def __init__(
        self,
        ctx: RunContext,
        step: Step[Any, Any],
        cfg: EffectiveStepConfig,
        invocation_id: str,
        parameters: dict[str, Any],
        sources: dict[str, Any],
        upstream: list[str],
        deps: list[Invocation],
    ) -> None:
        self.ctx = ctx
        self.step = step
        self.cfg = cfg
        self.invocation_id = invocation_id
        self._parameters: dict[str, Any] | None = parameters
        # Most steps have no sources, upstream steps or dependencies: no container of their own.
        self.sources: Mapping[str, Any] = sources or NO_INPUTS
        self.upstream: Sequence[str] = upstream or ()
        self.deps: Sequence[Invocation] = deps or ()
        self.future: Future[Mapping[str, OutputArtifact]] = OutputsFuture(ctx.futures_condition)
        self.node: NodeState = ctx.graph.add_node(invocation_id, step.name, self.upstream, cfg.runtime)
        self.node.parameters = parameters  # where ``parameters`` reads them once released
        self.step_run_id = ctx.ids.new()
        self.launch: Launch | None = None
        self.stop_reason: str | None = None
        self.started = False
        self.input_refs: Mapping[str, Any] = NO_INPUTS
        self.input_ids: Mapping[str, Any] = NO_INPUTS
        self.status = ExecutionStatus.QUEUED
        self.abandoned = False
        self._record: NewStepRun | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        """The step's plain parameters; once it has finished, rebuilt from its DAG node."""
        parameters = self._parameters
        return self.node.parameters if parameters is None else parameters

    # -- the StepRunHandle a StepRunFuture uses ----------------------------------------
    @property
    def preview(self) -> str | None:
        return self.node.preview

    @property
    def error(self) -> str | None:
        return self.node.error

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.step.outputs]

    @property
    def compiling(self) -> bool:
        return self.ctx.compiling

    def outputs_to_return(self, outputs: Mapping[str, OutputArtifact], output_name: str | None = None) -> Any:
        """What a step call returns: the named output, the only one, a tuple of them, or None."""
        if output_name is not None:
            return outputs[output_name]
        specs = self.step.outputs
        if not specs:
            return None
        if len(specs) == 1:
            return outputs[specs[0].name]
        return tuple(outputs[s.name] for s in specs)

    def interrupt(self, reason: str) -> None:
        self.ctx.stop_running(reason)

    # -- engine side ---------------------------------------------------------------------
    def record(self) -> NewStepRun:
        """What the store keeps of this invocation when it is first recorded.

        Built once (its start and its end both write it; nothing in it changes once the
        inputs are resolved, and every status before that is final) and dropped with the
        inputs in ``release_inputs``."""
        record = self._record
        if record is None:
            ctx = self.ctx
            record = self._record = NewStepRun(
                id=self.step_run_id, run_id=ctx.run_id, invocation_id=self.invocation_id,
                step_name=self.step.name, seq=self.node.order, runtime=self.cfg.runtime,
                upstream=list(self.upstream), parameters=self.parameters, inputs=dict(self.input_ids),
            )
        return record

    def final_record(self) -> NewStepRun:
        """``record()`` for the step's last write: not kept after it (an open run keeps every
        finished invocation, some of them before ``release_inputs`` ran)."""
        record = self.record()
        self._record = None
        return record

    def release_inputs(self) -> None:
        """Drop what only running the step needed, once it is recorded and its future resolved:
        in a 100,000-step run these dicts and lists were a few hundred bytes a step. Its
        parameters stay readable: the DAG node keeps them (packed)."""
        self.sources = self.input_refs = self.input_ids = NO_INPUTS
        self.deps = ()
        self._parameters = None
        self._record = None

    def pick_output(self, outputs: Mapping[str, OutputArtifact], name: str | None) -> OutputArtifact:
        if name is None:
            if len(outputs) != 1:
                raise ValueError(
                    f"step {self.invocation_id!r} has {len(outputs)} outputs"
                    f" ({', '.join(outputs) or 'none'}); pick one with future[i] or future['name']"
                )
            return next(iter(outputs.values()))
        try:
            return outputs[name]
        except KeyError:
            raise KeyError(f"step {self.invocation_id!r} has no output {name!r}") from None

    def request_stop(self, reason: str) -> None:
        if self.future.done():
            return
        self.stop_reason = reason
        launch = self.launch
        if launch is not None:
            launch.cancel()

    def __repr__(self) -> str:
        return f"<Invocation {self.invocation_id} {self.status}>"
