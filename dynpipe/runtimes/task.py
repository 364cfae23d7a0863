"""What a runtime executes: a StepTask in, a TaskResult out, the same code in every runtime.

``execute_task`` loads inputs from the store, checks their types, runs the step body with
its logs captured, checks and materializes the outputs. The orchestrator records the
result; a worker process or a Kubernetes pod runs exactly this function, and it only opens
the artifact side of the store (``open_artifacts``): small inputs kept in the metadata
database arrive inside the task (``InputRef.data``), small outputs go back inside the result.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
import traceback as tb
from dataclasses import dataclass, field
from typing import Any

from ..errors import StepTypeError, StoreError
from ..signatures import OutputSpec, type_matches, type_name
from ..store.materializers import Materializer
from ..store.store import Artifacts, SavedArtifact, open_artifacts
from .logs import capture_step_logs, record_step_error

#: seconds ``StepContext.step_run`` waits for a running step's start to be committed
STEP_RUN_WAIT = 5.0


@dataclass(frozen=True)
class InputRef:
    """An input artifact as the executing side needs it."""

    id: str
    uri: str
    materializer: str
    data_type: str
    size: int | None = None  # checked on load when the file is too big to re-hash
    data: bytes | None = None  # a ``db:`` artifact's bytes, shipped so a worker needs no database


@dataclass
class StepTask:
    """One attempt of one step invocation, self-contained so it can cross a process boundary."""

    run_id: str
    run_name: str
    pipeline_name: str
    step_run_id: str
    invocation_id: str
    step_name: str
    func: Any
    parameters: dict[str, Any]
    inputs: dict[str, InputRef | list[InputRef]]
    input_annotations: dict[str, Any]
    outputs: list[OutputSpec]
    materializers: dict[str, Materializer | None]
    store_root: str
    attempt: int = 1
    echo_logs: bool = True
    capture_logs: bool = True
    resources: Any = None
    # Runtime settings by key, each a list of layers (pipeline, then step): {"kubernetes": [...]}.
    settings: dict[str, list[Any]] = field(default_factory=dict)
    artifact_store: str | None = None  # the run's artifact store URL; "": the store's own folder
    dask: Any = None  # DaskSettings: where the step may run on a Dask cluster


@dataclass
class TaskResult:
    outputs: dict[str, SavedArtifact] = field(default_factory=dict)
    logs: str = ""
    error: BaseException | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    preview: str | None = None
    #: Where the attempt ran, for the live DAG ("pid 1234", "dask tcp://…"); None: not known.
    where: str | None = None

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, logs: str = "", error_type: str | None = None, traceback: str | None = None
    ) -> TaskResult:
        """A failed attempt from one exception: the one way runtimes report what went wrong
        around a step (it could not be sent, its worker died, its result could not be read)."""
        if traceback is None:
            traceback = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        return cls(
            logs=logs, error=exc, error_type=error_type or type(exc).__name__,
            error_message=str(exc), traceback=traceback,
        )


class StepContext:
    """What a running step (or its hooks) may ask about itself: ``get_step_context()``."""

    def __init__(self, task: StepTask, input_values: dict[str, Any] | None = None) -> None:
        self._task = task
        self.inputs: dict[str, Any] = input_values or {}
        self.output_metadata: dict[str, dict[str, Any]] = {}
        self.output_tags: dict[str, list[str]] = {}
        self.exception: BaseException | None = None

    @property
    def pipeline_run(self) -> Any:
        from ..store.client import Client  # deferred: a run needs no Client (cold start)

        return Client(self._task.store_root).get_pipeline_run(self._task.run_id)

    @property
    def pipeline(self) -> Any:
        """The pipeline this step runs in (``.name``, ``.runs``, ``.last_run``)."""
        from ..store.client import Client, PipelineInfo  # deferred: a run needs no Client (cold start)

        return PipelineInfo(self._task.pipeline_name, Client(self._task.store_root))

    @property
    def run_name(self) -> str:
        return self._task.run_name

    @property
    def run_id(self) -> str:
        return self._task.run_id

    @property
    def pipeline_name(self) -> str:
        return self._task.pipeline_name

    @property
    def step_name(self) -> str:
        return self._task.step_name

    @property
    def invocation_id(self) -> str:
        return self._task.invocation_id

    @property
    def step_run_id(self) -> str:
        return self._task.step_run_id

    @property
    def attempt(self) -> int:
        return self._task.attempt

    @property
    def step_run(self) -> Any:
        """This step's run as stored. A running step's start is committed at most a few tens of
        milliseconds after it starts (engine/starts.py), so a step that asks sooner waits that long."""
        deadline = time.monotonic() + STEP_RUN_WAIT
        while True:
            found = self.pipeline_run.steps.get(self._task.invocation_id)
            if found is not None or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self._task.outputs]

    def _output_name(self, output_name: str | None) -> str:
        names = self.output_names
        if output_name is None:
            if len(names) != 1:
                raise ValueError(
                    f"step {self.invocation_id!r} has outputs {names}; name the output"
                )
            return names[0]
        if output_name not in names:
            raise KeyError(f"step {self.invocation_id!r} has no output {output_name!r} ({names})")
        return output_name

    def add_output_metadata(self, metadata: dict[str, Any], output_name: str | None = None) -> None:
        self.output_metadata.setdefault(self._output_name(output_name), {}).update(metadata)

    def add_output_tags(self, tags: list[str], output_name: str | None = None) -> None:
        self.output_tags.setdefault(self._output_name(output_name), []).extend(tags)


_step_context: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "dynpipe_step_context", default=None
)


def current_step_context() -> StepContext | None:
    """The context of the step (or hook) running in this thread, or None outside one."""
    return _step_context.get()


def get_step_context() -> StepContext:
    """The context of the step (or hook) running in this thread."""
    ctx = _step_context.get()
    if ctx is None:
        raise RuntimeError("get_step_context() was called outside a running step or hook")
    return ctx


def set_step_context(ctx: StepContext | None) -> contextvars.Token[StepContext | None]:
    return _step_context.set(ctx)


def reset_step_context(token: contextvars.Token[StepContext | None]) -> None:
    _step_context.reset(token)


def _load_inputs(task: StepTask, store: Artifacts) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, ref in task.inputs.items():
        try:
            if isinstance(ref, list):
                values[name] = [
                    store.load_value(r.uri, r.materializer, r.data_type, r.size, r.data) for r in ref
                ]
            else:
                values[name] = store.load_value(ref.uri, ref.materializer, ref.data_type, ref.size, ref.data)
        except Exception as exc:
            raise RuntimeError(
                f"step {task.invocation_id!r}: cannot load input {name!r}: {exc}"
            ) from exc
    for name, value in values.items():
        ann = task.input_annotations.get(name)
        if ann is not None and not type_matches(value, ann):
            raise StepTypeError(
                f"step {task.invocation_id!r}: input {name!r} expects {type_name(ann)},"
                f" got {type(value).__name__}"
            )
    return values


def _split_outputs(task: StepTask, result: Any) -> dict[str, Any]:
    specs = task.outputs
    if not specs:
        return {}
    if len(specs) == 1:
        return {specs[0].name: result}
    if not isinstance(result, tuple) or len(result) != len(specs):
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise StepTypeError(
            f"step {task.invocation_id!r} declares {len(specs)} outputs"
            f" ({', '.join(s.name for s in specs)}) but returned {got}"
        )
    return dict(zip((s.name for s in specs), result, strict=False))


def _preview(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 120 else text[:119] + "…"


def execute_task(task: StepTask, on_log_line: Any = None, store: Any = None) -> TaskResult:
    """Run one attempt of a step; never raises for errors of the step itself.

    ``store`` (default: the task's artifact store) is what inputs load from and outputs save
    to; a pod passes one that writes artifact files only.
    """
    store = store if store is not None else open_artifacts(task.store_root, task.artifact_store)
    result = TaskResult()
    step_ctx = StepContext(task)
    token = set_step_context(step_ctx)
    try:
        if task.capture_logs:
            with capture_step_logs(task.invocation_id, task.echo_logs, on_log_line) as sink:
                try:
                    _run_body(task, store, step_ctx, result)
                finally:
                    result.logs = sink.text()
        else:
            _run_body(task, store, step_ctx, result)
    finally:
        reset_step_context(token)
    return result


def _run_body(task: StepTask, store: Artifacts, step_ctx: StepContext, result: TaskResult) -> None:
    try:
        kwargs = task.parameters
        if task.inputs:  # else nothing to load or merge (plain parameters only: most calls)
            values = step_ctx.inputs = _load_inputs(task, store)
            kwargs = {**kwargs, **values}
        raw = task.func(**kwargs)
        outputs = _split_outputs(task, raw)
        for spec in task.outputs:
            value = outputs[spec.name]
            # exactly the annotated class (most outputs): type_matches' own first check, no call
            if type(value) is not spec.annotation and not type_matches(value, spec.annotation):
                raise StepTypeError(
                    f"step {task.invocation_id!r}: output {spec.name!r} is annotated"
                    f" {type_name(spec.annotation)} but the step returned {type(value).__name__}"
                )
        for spec in task.outputs:
            value = outputs[spec.name]
            try:
                result.outputs[spec.name] = store.save_output(value, task.materializers.get(spec.name))
            except StoreError:
                raise  # disk full, permissions: the store's own message says what to do
            except Exception as exc:
                raise TypeError(
                    f"step {task.invocation_id!r}: output {spec.name!r} of type"
                    f" {type(value).__name__} cannot be stored: {exc}"
                ) from exc
        if len(task.outputs) == 1:
            result.preview = _preview(outputs[task.outputs[0].name])
        elif task.outputs:
            result.preview = ", ".join(f"{k}={_preview(v)}" for k, v in outputs.items())
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, SystemExit):
            raise
        result.error = exc
        result.error_type = type(exc).__name__
        result.error_message = str(exc)
        result.traceback = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        if task.capture_logs:
            record_step_error(result.traceback, f"{result.error_type}: {result.error_message}")
    result_metadata = step_ctx.output_metadata
    if result_metadata or step_ctx.output_tags:
        result.outputs = {
            name: _with_meta(saved, result_metadata.get(name), step_ctx.output_tags.get(name))
            for name, saved in result.outputs.items()
        }


def _with_meta(
    saved: SavedArtifact, meta: dict[str, Any] | None, tags: list[str] | None
) -> SavedArtifact:
    return dataclasses.replace(saved, metadata=meta or None, tags=tuple(tags or ()))


def with_inline_inputs(task: StepTask, blobs: Any) -> StepTask:
    """``task`` with the bytes of its ``db:`` inputs attached (``blobs.get_blob``), for shipping
    to a process that does not open the metadata database; unchanged if it has none."""
    changed = False

    def attach(ref: InputRef) -> InputRef:
        nonlocal changed
        if ref.data is not None or not ref.uri.startswith("db:"):
            return ref
        data = blobs.get_blob(ref.uri[3:])
        if data is None:
            raise FileNotFoundError(
                f"step {task.invocation_id!r}: input artifact {ref.uri} is missing from the store's database"
            )
        changed = True
        return dataclasses.replace(ref, data=data)

    inputs = {
        name: [attach(r) for r in ref] if isinstance(ref, list) else attach(ref)
        for name, ref in task.inputs.items()
    }
    return dataclasses.replace(task, inputs=inputs) if changed else task
