"""The launcher: turns a step call into a recorded step run.

For each invocation: allocate its id, split arguments into parameters and input
artifacts, wait for upstream work, look up the cache, start attempts on the step's
runtime with retries, record outputs and status in the store, run hooks, and apply the
run's execution mode when something fails.
"""

from __future__ import annotations

from ..errors import StepSkippedError, StepStoppedError, StepExecutionError  # noqa: F401 - re-exported for existing imports

import json
import time
import traceback as tb
import uuid
import warnings
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import CachePolicy, ConfigError, StepRetryConfig
from ..outputs import OutputArtifact, OutputSpec, StepTypeError, type_matches, type_name
from ..runtimes.base import Launch
from ..runtimes.logs import echo_enabled
from ..runtimes.task import (
    InputRef,
    StepContext,
    StepTask,
    TaskResult,
    reset_step_context,
    set_step_context,
)
from ..store.materializers import Materializer, is_plain_json, registry
from ..store.metadata import MetadataStore
from ..store.models import _ARTIFACT_FIELDS, ArtifactVersion
from .cache import cache_key
from .context import RunContext
from .dag import NodeState, short_repr

if TYPE_CHECKING:
    from ..steps import Step


#: dynpipe's own source folder: frames there are machinery, not the user's code.
_PACKAGE_DIR = __file__.rsplit("/engine/", 1)[0] + "/"





@dataclass(frozen=True)
class EffectiveStepConfig:
    """A step's configuration with pipeline defaults and YAML applied; computed once per run."""

    enable_cache: bool
    runtime: str
    retry: StepRetryConfig | None
    on_failure: Any
    on_success: Any
    cache_policy: CachePolicy
    resources: Any
    materializers: dict[str, Materializer | None]
    config_parameters: dict[str, Any]
    fingerprint: str
    capture_logs: bool
    runtime_settings: dict[str, list[Any]] = field(default_factory=dict)


def effective_config(ctx: RunContext, step: Step) -> EffectiveStepConfig:
    cached = ctx.effective_configs.get(id(step))
    if cached is not None and cached[0] is step and cached[1] is step.config:
        return cached[2]
    pc = ctx.config
    sc = step.config
    yaml_cfg = pc.steps.get(step.name)
    if yaml_cfg is not None:
        sc = sc.merged(**yaml_cfg.model_dump(exclude_defaults=True))
    materializers = _materializers_for(step, sc.output_materializers)
    enable_cache = sc.enable_cache if sc.enable_cache is not None else pc.enable_cache
    policy = sc.cache_policy or pc.cache_policy or CachePolicy.default()
    fingerprint = json.dumps(
        {
            "outputs": [(o.name, repr(o.annotation)) for o in step.outputs],
            "materializers": {k: (m.name if m else None) for k, m in materializers.items()},
            "extra": sc.extra,
        },
        sort_keys=True,
        default=repr,
    )
    eff = EffectiveStepConfig(
        enable_cache=enable_cache,
        runtime=sc.runtime or "inline",
        retry=sc.retry or pc.retry,
        on_failure=sc.on_failure or pc.on_failure,
        on_success=sc.on_success or pc.on_success,
        cache_policy=policy,
        resources=sc.resources,
        materializers=materializers,
        config_parameters=dict(sc.parameters),
        fingerprint=fingerprint,
        capture_logs=sc.enable_step_logs if sc.enable_step_logs is not None else pc.enable_step_logs,
        runtime_settings={"kubernetes": [s.settings["kubernetes"] for s in (pc, sc) if "kubernetes" in s.settings]},
    )
    # Keyed on the config object too: configure() between calls (notebook cells) takes effect.
    ctx.effective_configs[id(step)] = (step, step.config, eff)
    return eff


def _materializers_for(step: Step, spec: Any) -> dict[str, Materializer | None]:
    result: dict[str, Materializer | None] = {o.name: None for o in step.outputs}
    if spec is None:
        return result
    if isinstance(spec, dict):
        for name, mat in spec.items():
            if name not in result:
                raise ConfigError(
                    f"step {step.name!r}: output_materializers names output {name!r},"
                    f" but the step's outputs are {list(result)}"
                )
            result[name] = registry.add(mat)
        return result
    mat = registry.add(spec)
    return {name: mat for name in result}


# -- input sources -------------------------------------------------------------------


class FutureOutput:
    """One named output of a submitted step; usable as a step input."""

    __slots__ = ("invocation", "output_name")

    def __init__(self, invocation: Invocation, output_name: str | None) -> None:
        self.invocation = invocation
        self.output_name = output_name

    def artifact(self) -> OutputArtifact:
        outputs = self.invocation.future.result()
        return self.invocation.pick_output(outputs, self.output_name)


InputSource = Any  # OutputArtifact | ArtifactVersion | FutureOutput


def _is_source(value: Any) -> bool:
    from ..futures import StepRunFuture

    return isinstance(value, (ArtifactVersion, FutureOutput, StepRunFuture))


def is_step_output(value: Any) -> bool:
    """A future or artifact (or a list of them): data flow, not a plain parameter."""
    if isinstance(value, (list, tuple)) and value:
        return all(_is_source(v) for v in value)
    return _is_source(value)


def _as_source(value: Any) -> Any:
    from ..futures import StepRunFuture

    if isinstance(value, StepRunFuture):
        return value._output_ref(None)
    return value


# -- invocation ------------------------------------------------------------------------


class Invocation:
    """One call of a step inside a run, from submission to its recorded end."""

    __slots__ = (
        "ctx", "step", "cfg", "invocation_id", "parameters", "sources", "upstream", "deps",
        "future", "node", "step_run_id", "launch", "stop_reason", "started", "input_refs",
        "__weakref__",
    )

    def __init__(
        self,
        ctx: RunContext,
        step: Step,
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
        self.parameters = parameters
        self.sources = sources
        self.upstream = upstream
        self.deps = deps
        self.future: Future[dict[str, OutputArtifact]] = Future()
        self.node: NodeState = ctx.graph.add_node(invocation_id, step.name, upstream, cfg.runtime)
        self.step_run_id = uuid.uuid4().hex
        self.launch: Launch | None = None
        self.stop_reason: str | None = None
        self.started = False
        self.input_refs: dict[str, Any] = {}

    def pick_output(self, outputs: dict[str, OutputArtifact], name: str | None) -> OutputArtifact:
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
        return f"<Invocation {self.invocation_id} {self.node.status}>"


def _nested_source(value: Any, depth: int = 0) -> bool:
    """True if a container holds futures or artifacts somewhere inside (not as a flat list)."""
    if _is_source(value):
        return True
    if depth > 3:
        return False
    if isinstance(value, dict):
        return any(_nested_source(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return any(_nested_source(v, depth + 1) for v in value)
    return False


def _external_input(ctx: RunContext, step: Step, name: str, value: Any) -> ArtifactVersion:
    """Store a plain value passed to a step as an input artifact; name the input on failure."""
    if _nested_source(value):
        raise TypeError(
            f"step {step.name!r}: input {name!r} holds futures/artifacts inside a"
            f" {type(value).__name__}; pass a future or artifact directly, or a list of them"
        )
    try:
        saved = ctx.store.save_value(value)
    except Exception as exc:  # noqa: BLE001 - re-raised with the step and input named
        raise TypeError(
            f"step {step.name!r}: input {name!r} of type {type(value).__name__} cannot be"
            f" stored as an artifact: {exc}"
        ) from exc
    return _record_external(ctx, saved)


def prepare(
    ctx: RunContext,
    step: Step,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    custom_id: str | None = None,
    after: Any = None,
) -> Invocation:
    """Bind arguments, allocate the invocation id and register the node (caller's thread)."""
    if step.missing_annotations:
        step.check_annotations()
    cfg = effective_config(ctx, step)
    try:
        bound = step.signature.bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"step {step.name!r}: {exc}") from None
    arguments = bound.arguments
    for name, value in cfg.config_parameters.items():
        if name not in step.signature.parameters:
            raise ConfigError(f"step {step.name!r}: configured parameter {name!r} is not an input of the step")
        if name in arguments and arguments[name] != value:
            raise ConfigError(
                f"step {step.name!r}: parameter {name!r} is set both in code ({arguments[name]!r})"
                f" and in configuration ({value!r})"
            )
        arguments.setdefault(name, value)
    missing = [
        n for n, p in step.signature.parameters.items()
        if n not in arguments and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        raise TypeError(f"step {step.name!r}: missing input(s) {', '.join(map(repr, missing))}")
    parameters: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    deps: list[Invocation] = []
    upstream: list[str] = []
    for name, value in arguments.items():
        if _is_source(value):
            src = _as_source(value)
            sources[name] = src
            _collect_dep(src, ctx, deps, upstream)
        elif isinstance(value, (list, tuple)) and value and any(_is_source(v) for v in value):
            # Plain items beside futures/artifacts (``add([prev, 1])``) are stored as input
            # artifacts, so the step gets one list in the order it was written.
            srcs = [
                _as_source(v) if _is_source(v) else _external_input(ctx, step, f"{name}[{i}]", v)
                for i, v in enumerate(value)
            ]
            sources[name] = srcs
            for src in srcs:
                _collect_dep(src, ctx, deps, upstream)
        else:
            ann = step.input_annotations.get(name)
            if ann is not None and not type_matches(value, ann):
                raise StepTypeError(
                    f"step {step.name!r}: input {name!r} expects {type_name(ann)},"
                    f" got {type(value).__name__} ({short_repr(value, 60)})"
                )
            if is_plain_json(value):
                parameters[name] = value
            else:
                # A value JSON would not give back unchanged (tuples, int keys, objects)
                # becomes an input artifact, so its cache key and stored copy are exact.
                sources[name] = _external_input(ctx, step, name, value)
    for dep in _as_list(after):
        src = _as_source(dep)
        if isinstance(src, FutureOutput):
            _collect_dep(src, ctx, deps, upstream)
        elif isinstance(src, OutputArtifact):
            if src.invocation_id not in upstream:
                upstream.append(src.invocation_id)
        elif isinstance(src, str):
            earlier = next((i for i in reversed(ctx.invocations) if i.invocation_id == src), None)
            if earlier is None:
                raise ValueError(f"step {step.name!r}: after={src!r} names no invocation of this run")
            _collect_dep(FutureOutput(earlier, None), ctx, deps, upstream)
        else:
            raise TypeError(f"step {step.name!r}: after= takes futures, artifacts or invocation ids, not {type(dep).__name__}")
    invocation_id = ctx.allocate_id(step.config.name or step.name, custom_id)
    inv = Invocation(ctx, step, cfg, invocation_id, parameters, sources, upstream, deps)
    inv.node.parameters = parameters
    ctx.track(inv)
    return inv


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return [value]


def _collect_dep(src: Any, ctx: RunContext, deps: list[Invocation], upstream: list[str]) -> None:
    if isinstance(src, FutureOutput):
        inv = src.invocation
        if inv.ctx is ctx:
            if inv not in deps:
                deps.append(inv)
            if inv.invocation_id not in upstream:
                upstream.append(inv.invocation_id)
        else:
            deps.append(inv)
    elif isinstance(src, OutputArtifact) and src.step_run_in == ctx.run_id:
        if src.invocation_id not in upstream:
            upstream.append(src.invocation_id)


def _record_external(ctx: RunContext, saved: Any) -> ArtifactVersion:
    name = f"{ctx.pipeline_name}::external"
    ctx.store.metadata.write(
        [
            MetadataStore.insert_artifact_sql(
                saved.id, name, saved.uri, saved.content_hash, saved.data_type,
                saved.materializer, None, ctx.run_id, None, saved.size,
            )
        ]
    )
    return ArtifactVersion(
        ctx.store, id=saved.id, name=name, version=None, uri=saved.uri,
        content_hash=saved.content_hash, data_type=saved.data_type,
        materializer=saved.materializer, run_id=ctx.run_id,
    )


# -- scheduling ------------------------------------------------------------------------


def schedule(inv: Invocation) -> None:
    """Start ``inv`` on a pool once every upstream invocation has finished."""
    pending = [d for d in inv.deps if not d.future.done()]
    if not pending:
        _dispatch(inv)
        return
    remaining = [len(pending)]
    lock = inv.ctx.lock

    def on_done(_: Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            ready = remaining[0] == 0
        if ready:
            _dispatch(inv)

    for dep in pending:
        dep.future.add_done_callback(on_done)


def _dispatch(inv: Invocation) -> None:
    pool = inv.ctx.isolated_pool() if inv.cfg.runtime == "isolated" else inv.ctx.inline_pool()
    try:
        pool.submit(run_invocation, inv)
    except RuntimeError:  # pool shut down: the run is over
        _finish_skipped(inv, "the run ended before this step could start")


def release_held(ctx: RunContext) -> None:
    """Static pipelines: start the compiled DAG."""
    held, ctx.held = ctx.held, []
    for inv in held:
        schedule(inv)


def abandon_held(ctx: RunContext, reason: str) -> None:
    """Compiled but never started (the pipeline function failed): record as skipped."""
    held, ctx.held = ctx.held, []
    for inv in held:
        _finish_skipped(inv, reason)
        ctx.untrack(inv)


# -- execution ---------------------------------------------------------------------------


def run_invocation(inv: Invocation) -> None:
    """Run ``inv`` to its end in the current thread; the outcome lands on ``inv.future``."""
    ctx = inv.ctx
    try:
        _run(inv)
    except BaseException as exc:  # noqa: BLE001 - report, never lose the future
        if not inv.future.done():
            if isinstance(exc, KeyboardInterrupt):
                _finish_stopped(inv, "interrupted", "", max(inv.node.attempts, 1))
            else:
                trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
                _finish_failed(inv, exc, trace, "", 1)
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        ctx.untrack(inv)


def _run(inv: Invocation) -> None:
    ctx = inv.ctx
    inv.started = True
    # Upstream outcomes decide whether this step may run at all.
    for dep in inv.deps:
        exc = dep.future.exception()
        if exc is not None:
            _finish_skipped(inv, f"upstream step {dep.invocation_id!r} did not complete ({dep.node.status})")
            return
    if ctx.stopping:
        first = ctx.first_failure[0] if ctx.first_failure else None
        why = f"step {first!r} failed ({ctx.mode.value})" if first else "the run was stopped"
        _finish_skipped(inv, f"not started: {why}")
        return
    inputs, input_hashes, input_ids = _resolve_inputs(inv)
    inv.input_refs = inputs
    inv.node.inputs = {k: (v if isinstance(v, str) else list(v)) for k, v in input_ids.items()}
    key = None
    cfg = inv.cfg
    if cfg.enable_cache:
        key = cache_key(
            step_name=inv.step.name,
            code_hash=inv.step.code_hash,
            parameters=inv.parameters,
            input_hashes=input_hashes,
            input_ids=input_ids,
            config_fingerprint=cfg.fingerprint,
            policy=cfg.cache_policy,
        )
        if _try_cache(inv, key, input_ids):
            return
    _execute_attempts(inv, inputs, input_ids, key)


def _resolve_inputs(
    inv: Invocation,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    refs: dict[str, Any] = {}
    hashes: dict[str, Any] = {}
    ids: dict[str, Any] = {}
    for name, src in inv.sources.items():
        if isinstance(src, list):
            arts = [_artifact_of(s) for s in src]
            refs[name] = [InputRef(a.id, a.uri, a.materializer, a.data_type) for a in arts]
            hashes[name] = [a.content_hash for a in arts]
            ids[name] = [a.id for a in arts]
        else:
            a = _artifact_of(src)
            refs[name] = InputRef(a.id, a.uri, a.materializer, a.data_type)
            hashes[name] = a.content_hash
            ids[name] = a.id
    return refs, hashes, ids


def _artifact_of(src: Any) -> ArtifactVersion:
    if isinstance(src, FutureOutput):
        return src.artifact()
    return src


def _try_cache(inv: Invocation, key: str, input_ids: dict[str, Any]) -> bool:
    ctx = inv.ctx
    policy = inv.cfg.cache_policy
    max_age = policy.max_age_seconds
    row = ctx.store.metadata.find_cached(key, time.time() - max_age if max_age else None)
    if row is None:
        return False
    output_ids: dict[str, str] = json.loads(row["outputs"] or "{}")
    from ..store.models import load_artifacts

    arts = load_artifacts(ctx.store, set(output_ids.values()))
    if len(arts) != len(output_ids) or not all(ctx.store.files.exists(a.uri) for a in arts.values()):
        return False
    now = time.time()
    ctx.store.metadata.write(
        [
            MetadataStore.insert_step_run_sql(
                inv.step_run_id, ctx.run_id, inv.invocation_id, inv.step.name, inv.node.order, "cached", now,
                inv.cfg.runtime, inv.upstream, json.dumps(inv.parameters), json.dumps(input_ids),
            ),
            (
                "UPDATE step_runs SET end = ?, cache_key = ?, cached_from = ?, outputs = ? WHERE id = ?",
                (now, key, row["id"], row["outputs"], inv.step_run_id),
            ),
        ]
    )
    outputs = {
        name: _as_output(ctx, inv, arts[aid]) for name, aid in output_ids.items()
    }
    ctx.graph.update(
        inv.node, status="cached", cached=True, start=now, end=now, outputs=list(outputs),
        preview=None,
    )
    inv.future.set_result(outputs)
    return True


def _as_output(ctx: RunContext, inv: Invocation, art: ArtifactVersion) -> OutputArtifact:
    fields = {k: getattr(art, k) for k in _ARTIFACT_FIELDS}
    return OutputArtifact(ctx.store, inv.invocation_id, ctx.run_id, **fields)


def _build_task(inv: Invocation, inputs: dict[str, Any], attempt: int) -> StepTask:
    ctx = inv.ctx
    return StepTask(
        run_id=ctx.run_id,
        run_name=ctx.run_name,
        pipeline_name=ctx.pipeline_name,
        step_run_id=inv.step_run_id,
        invocation_id=inv.invocation_id,
        step_name=inv.step.name,
        func=inv.step.entrypoint,
        parameters=inv.parameters,
        inputs=inputs,
        input_annotations=inv.step.input_annotations,
        outputs=inv.step.outputs,
        materializers=inv.cfg.materializers,
        store_root=str(ctx.store.root),
        attempt=attempt,
        echo_logs=echo_enabled(),
        capture_logs=inv.cfg.capture_logs,
        resources=inv.cfg.resources,
        settings=inv.cfg.runtime_settings,
    )


def _execute_attempts(
    inv: Invocation, inputs: dict[str, Any], input_ids: dict[str, Any], key: str | None
) -> None:
    ctx = inv.ctx
    node = inv.node
    start = time.time()
    ctx.store.metadata.write(
        [
            MetadataStore.insert_step_run_sql(
                inv.step_run_id, ctx.run_id, inv.invocation_id, inv.step.name, inv.node.order, "running", start,
                inv.cfg.runtime, inv.upstream, json.dumps(inv.parameters), json.dumps(input_ids),
            )
        ]
    )
    ctx.graph.update(node, status="running", start=start, attempts=1)
    retry = inv.cfg.retry
    max_attempts = 1 + (retry.max_retries if retry else 0)
    runtime = ctx.runtime(inv.cfg.runtime)
    logs_so_far: list[str] = []
    attempt = 1
    graph = ctx.graph

    def on_line(line: str) -> None:
        graph.add_log_line(node, line)

    while True:
        attempt_start = time.time()
        task = _build_task(inv, inputs, attempt)
        if inv.stop_reason is not None:
            _finish_stopped(inv, inv.stop_reason, "".join(logs_so_far), attempt)
            return
        launch = runtime.launch(task, on_line)
        inv.launch = launch
        if inv.stop_reason is not None:
            # request_stop ran while the launch was starting and saw no launch to cancel.
            launch.cancel()
        try:
            result = launch.result()
        except BaseException:
            launch.cancel()
            raise
        finally:
            inv.launch = None
        if len(result.logs) > 0:
            logs_so_far.append(result.logs if max_attempts == 1 else f"--- attempt {attempt} ---\n{result.logs}")
        logs = "".join(logs_so_far)
        if inv.stop_reason is not None:
            _finish_stopped(inv, inv.stop_reason, logs, attempt)
            return
        if result.error is None and result.error_type is None:  # a worker's error may come as type/message only
            _finish_completed(inv, result, logs, attempt, key, attempt_start)
            return
        if attempt < max_attempts and not (ctx.stopping and ctx.mode.value == "fail_fast"):
            assert retry is not None
            delay = retry.wait_before(attempt)
            ctx.store.metadata.write(
                [
                    (
                        "INSERT INTO step_attempts VALUES (?,?,?,?,?,?,?)",
                        (inv.step_run_id, attempt, "failed", attempt_start, time.time(),
                         result.error_type, result.error_message),
                    ),
                    (
                        "UPDATE step_runs SET status = 'retrying', attempts = ? WHERE id = ?",
                        (attempt, inv.step_run_id),
                    ),
                ]
            )
            graph.update(node, status="retrying", error=f"{result.error_type}: {result.error_message}")
            if _wait_unless_stopped(inv, delay):
                _finish_stopped(inv, inv.stop_reason or "run stopped while waiting to retry", logs, attempt)
                return
            attempt += 1
            ctx.store.metadata.write(
                [("UPDATE step_runs SET status = 'running', attempts = ? WHERE id = ?", (attempt, inv.step_run_id))]
            )
            graph.update(node, status="running", attempts=attempt)
            continue
        _finish_failed_result(inv, result, logs, attempt, attempt_start)
        return


def _wait_unless_stopped(inv: Invocation, delay: float) -> bool:
    """Sleep ``delay`` before a retry; True as soon as this invocation is stopped.

    The run's stop event alone is not enough: under STOP_ON_FAILURE it is set by any
    failure, yet a step that is already running (or retrying) keeps its full delay.
    """
    end = time.monotonic() + delay
    while inv.stop_reason is None:
        left = end - time.monotonic()
        if left <= 0:
            return False
        if not inv.ctx.stop_event.wait(left):
            return False
        time.sleep(min(left, 0.02))
    return True


def _finish_completed(
    inv: Invocation, result: TaskResult, logs: str, attempt: int, key: str | None, attempt_start: float
) -> None:
    ctx = inv.ctx
    end = time.time()
    statements = []
    output_ids: dict[str, str] = {}
    outputs: dict[str, OutputArtifact] = {}
    specs = {o.name: o for o in inv.step.outputs}
    for name, saved in result.outputs.items():
        spec: OutputSpec | None = specs.get(name)
        art_cfg = spec.artifact_config if spec else None
        art_name = (
            art_cfg.name if art_cfg and art_cfg.name
            else _custom_name(spec) or f"{ctx.pipeline_name}::{inv.invocation_id}::{name}"
        )
        tags = list(saved.tags) + (list(art_cfg.tags) if art_cfg else [])
        statements.append(
            MetadataStore.insert_artifact_sql(
                saved.id, art_name, saved.uri, saved.content_hash, saved.data_type,
                saved.materializer, inv.step_run_id, ctx.run_id, name, saved.size,
                metadata=saved.metadata, tags=tags or None,
            )
        )
        output_ids[name] = saved.id
        outputs[name] = OutputArtifact(
            ctx.store, inv.invocation_id, ctx.run_id, id=saved.id, name=art_name, version=None,
            uri=saved.uri, content_hash=saved.content_hash, data_type=saved.data_type,
            materializer=saved.materializer, producer_step_run_id=inv.step_run_id,
            run_id=ctx.run_id, output_name=name, size=saved.size,
            metadata=saved.metadata or {}, tags=tags,
        )
    statements.append(
        (
            "INSERT INTO step_attempts VALUES (?,?,?,?,?,?,?)",
            (inv.step_run_id, attempt, "completed", attempt_start, end, None, None),
        )
    )
    statements.append(
        (
            "UPDATE step_runs SET status = 'completed', end = ?, attempts = ?, cache_key = ?,"
            " outputs = ?, logs = ? WHERE id = ?",
            (end, attempt, key, json.dumps(output_ids), logs, inv.step_run_id),
        )
    )
    ctx.store.metadata.write(statements)
    ctx.graph.update(
        inv.node, status="completed", end=end, attempts=attempt, outputs=list(outputs),
        preview=result.preview, error=None,
    )
    hook_report = _run_hook(inv, inv.cfg.on_success, None)
    if hook_report:
        ctx.store.metadata.write(
            [("UPDATE step_runs SET logs = COALESCE(logs, '') || ? WHERE id = ?", (hook_report, inv.step_run_id))]
        )
    inv.future.set_result(outputs)


def _custom_name(spec: OutputSpec | None) -> str | None:
    if spec is None or spec.name.startswith("output"):
        return None
    return spec.name


def _finish_failed_result(
    inv: Invocation, result: TaskResult, logs: str, attempt: int, attempt_start: float
) -> None:
    exc = result.error
    if exc is None:
        exc = StepExecutionError(f"{result.error_type}: {result.error_message}")
    inv.ctx.store.metadata.write(
        [
            (
                "INSERT INTO step_attempts VALUES (?,?,?,?,?,?,?)",
                (inv.step_run_id, attempt, "failed", attempt_start, time.time(),
                 result.error_type, result.error_message),
            )
        ]
    )
    _finish_failed(inv, exc, result.traceback or "", logs, attempt, result.error_type, result.error_message)


def _finish_failed(
    inv: Invocation,
    exc: BaseException,
    traceback: str,
    logs: str,
    attempt: int,
    error_type: str | None = None,
    error_message: str | None = None,
) -> None:
    ctx = inv.ctx
    end = time.time()
    error_type = error_type or type(exc).__name__
    error_message = error_message if error_message is not None else str(exc)
    hook_report = _run_hook(inv, inv.cfg.on_failure, exc)
    if hook_report:
        logs = logs + hook_report
    ctx.store.metadata.write(
        [
            (
                "INSERT OR IGNORE INTO step_runs (id, run_id, invocation_id, step_name, seq, status,"
                " start, runtime, upstream, parameters) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (inv.step_run_id, ctx.run_id, inv.invocation_id, inv.step.name, inv.node.order, "failed", end,
                 inv.cfg.runtime, json.dumps(inv.upstream), json.dumps(inv.parameters)),
            ),
            (
                "UPDATE step_runs SET status = 'failed', end = ?, attempts = ?, logs = ?,"
                " error_type = ?, error_message = ?, traceback = ? WHERE id = ?",
                (end, attempt, logs, error_type, error_message, traceback, inv.step_run_id),
            ),
        ]
    )
    ctx.graph.update(
        inv.node, status="failed", end=end, attempts=attempt, error=f"{error_type}: {error_message}",
        traceback=user_traceback(traceback),
    )
    ctx.record_failure(inv.invocation_id, exc)
    inv.future.set_exception(exc)


def _finish_skipped(inv: Invocation, reason: str) -> None:
    _finish_without_running(inv, "skipped", StepSkippedError(f"step {inv.invocation_id!r} was skipped: {reason}"), reason)


def abandon_outstanding(ctx: RunContext, reason: str) -> None:
    """Record every step still in flight as stopped without waiting for it.

    Used after an interrupt once the grace period is over: an inline step cannot be killed
    inside its thread, so its eventual result is discarded (its thread is a daemon).
    """
    with ctx.lock:
        pending = [inv for inv in ctx.outstanding if not inv.future.done()]
    for inv in pending:
        try:
            if inv.started:
                _finish_stopped(inv, reason, "", max(inv.node.attempts, 1))
            else:
                _finish_without_running(inv, "stopped", StepStoppedError(reason), reason)
        except InvalidStateError:
            pass  # it finished on its own meanwhile
        ctx.untrack(inv)


def user_traceback(text: str) -> str | None:
    """A stored traceback without dynpipe's and concurrent.futures' frames (for the DAG view)."""
    if not text:
        return None
    kept: list[str] = []
    skip_code = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("File "):
            skip_code = _PACKAGE_DIR in line or "/concurrent/futures/" in line
            if skip_code:
                continue
        elif skip_code and line.startswith("    "):
            continue
        else:
            skip_code = False
        kept.append(line)
    return "\n".join(kept)


def _finish_stopped(inv: Invocation, reason: str, logs: str, attempt: int) -> None:
    ctx = inv.ctx
    end = time.time()
    ctx.store.metadata.write(
        [
            (
                "UPDATE step_runs SET status = 'stopped', end = ?, attempts = ?, logs = ?,"
                " error_type = 'Stopped', error_message = ? WHERE id = ?",
                (end, attempt, logs, reason, inv.step_run_id),
            )
        ]
    )
    ctx.graph.update(inv.node, status="stopped", end=end, error=reason)
    inv.future.set_exception(StepStoppedError(f"step {inv.invocation_id!r} was stopped: {reason}"))


def _finish_without_running(inv: Invocation, status: str, exc: BaseException, reason: str) -> None:
    ctx = inv.ctx
    now = time.time()
    ctx.store.metadata.write(
        [
            MetadataStore.insert_step_run_sql(
                inv.step_run_id, ctx.run_id, inv.invocation_id, inv.step.name, inv.node.order, status, None,
                inv.cfg.runtime, inv.upstream, json.dumps(inv.parameters), "{}",
            ),
            (
                "UPDATE step_runs SET end = ?, error_type = ?, error_message = ? WHERE id = ?",
                (now, "Skipped" if status == "skipped" else "Stopped", reason, inv.step_run_id),
            ),
        ]
    )
    ctx.graph.update(inv.node, status=status, error=reason)
    if not inv.future.done():
        inv.future.set_exception(exc)


def _run_hook(inv: Invocation, hook: Any, exc: BaseException | None) -> str:
    """Run a success/failure hook with the step context set; return a report if it raised."""
    if hook is None:
        return ""
    task = _build_task(inv, inv.input_refs, inv.node.attempts or 1)
    step_ctx = StepContext(task, _hook_inputs(inv))
    step_ctx.exception = exc
    token = set_step_context(step_ctx)
    try:
        if exc is not None and _takes_argument(hook):
            hook(exc)
        else:
            hook()
        return ""
    except Exception as hook_exc:  # noqa: BLE001 - a hook must not corrupt the run record
        kind = "on_failure" if exc is not None else "on_success"
        message = (
            f"dynpipe: {kind} hook {getattr(hook, '__name__', hook)!r} of step"
            f" {inv.invocation_id!r} raised {type(hook_exc).__name__}: {hook_exc}"
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return "\n" + message + "\n" + "".join(tb.format_exception(type(hook_exc), hook_exc, hook_exc.__traceback__))
    finally:
        reset_step_context(token)


def _hook_inputs(inv: Invocation) -> dict[str, Any]:
    """The step's input values for ``get_step_context().inputs`` inside a hook (loaded again)."""
    store = inv.ctx.store
    values: dict[str, Any] = {}
    for name, ref in inv.input_refs.items():
        try:
            if isinstance(ref, list):
                values[name] = [store.load_value(r.uri, r.materializer, r.data_type) for r in ref]
            else:
                values[name] = store.load_value(ref.uri, ref.materializer, ref.data_type)
        except Exception:  # noqa: BLE001 - a hook still runs without an unreadable input
            continue
    return values


def _takes_argument(fn: Any) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def outputs_to_return(inv: Invocation, outputs: dict[str, OutputArtifact]) -> Any:
    """What a synchronous step call returns: one artifact, a tuple of them, or None."""
    specs = inv.step.outputs
    if not specs:
        return None
    if len(specs) == 1:
        return outputs[specs[0].name]
    return tuple(outputs[s.name] for s in specs)


def call_sync(inv: Invocation) -> Any:
    """Run ``inv`` now in the caller's thread and return its outputs (or raise its error)."""
    for dep in inv.deps:
        try:
            dep.future.result()
        except BaseException:  # noqa: BLE001 - handled as "skipped" in _run
            pass
    __tracebackhide__ = True  # noqa: F841 - IPython leaves this frame out of tracebacks
    run_invocation(inv)
    exc = inv.future.exception()
    if exc is not None:
        raise without_engine_frames(exc)
    return outputs_to_return(inv, inv.future.result())


def without_engine_frames(exc: BaseException) -> BaseException:
    """The step's error with dynpipe's own leading frames dropped from its traceback, so a
    notebook shows the user's code (the frame that raised) rather than the machinery."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return exc.with_traceback(tb)
