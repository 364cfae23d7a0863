"""``dynpipe run MODULE [-p NAME=VALUE]... [--config run.yaml]``: run a module's pipeline once.

``--on kubernetes`` runs the orchestrating process itself as a Job in the cluster (the pod a
scheduled CronJob starts, ``run_job``): the module is not imported here, only parsed.
``-p`` values arrive as text; each is parsed against the pipeline's signature (annotation,
else the default's type) so a typo fails before the run starts, naming the parameter.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DynpipeError


def _annotation(pipe: Any, name: str, param: inspect.Parameter) -> Any:
    from ..steps import resolved_type_hints

    hints = resolved_type_hints(pipe.entrypoint)
    if name in hints:
        return hints[name]
    if param.default is not param.empty and param.default is not None:
        return type(param.default)
    return None


def parse_parameters(pipe: Any, pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.1", ...]`` -> ``{"lr": 0.1}``, checked against ``pipe``'s signature."""
    from pydantic import TypeAdapter, ValidationError

    from ..outputs import type_name

    params = pipe.signature.parameters
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"pipeline {pipe.name!r}: -p {pair!r} is not NAME=VALUE")
        if name not in params or params[name].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            known = ", ".join(n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
            raise ConfigError(f"pipeline {pipe.name!r} has no parameter {name!r} (parameters: {known or 'none'})")
        ann = _annotation(pipe, name, params[name])
        value: Any = raw
        if ann is not str:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        if ann is not None:
            try:
                value = TypeAdapter(ann).validate_python(value)
            except ValidationError:
                raise ConfigError(
                    f"pipeline {pipe.name!r}: parameter {name!r} expects {type_name(ann)}, got {raw!r}"
                ) from None
            except Exception:  # noqa: BLE001 - a type pydantic cannot check: keep the parsed value
                pass
        values[name] = value
    return values


def with_config(pipe: Any, path: str) -> Any:
    """A copy of ``pipe`` with a YAML config template applied, as ``%%pipeline --config`` does."""
    from ..config_yaml import load_config_file

    clone = copy.copy(pipe)
    clone.config = pipe.config.merged(**load_config_file(path, None), config_path=path)
    return clone


def run_module(target: str, pairs: list[str], config: str | None = None, run_name: str | None = None) -> Any:
    """Import ``target`` (``file.py[:pipeline]`` or ``package.module[:pipeline]``) and run it."""
    from .target import load_pipeline

    pipe = load_pipeline(target)
    params = parse_parameters(pipe, pairs)
    if config:
        pipe = with_config(pipe, config)
    if run_name:
        pipe = pipe.with_options(run_name=run_name)
    return pipe(**params)


def run_on_kubernetes(args: argparse.Namespace) -> int:
    """Start the run as a Job (or write its manifests); with ``--wait``, follow it to its end."""
    import yaml

    from .k8s_objects import ClusterError, follow_job, load_client, start_run_job
    from .module_info import check_params
    from .params import split_params
    from .pod_options import PodOptions, build, options_from_args
    from .run_job import module_of, run_job_manifests

    config = Path(args.config) if args.config else None
    if config is not None:
        from ..config_yaml import load_config_file

        load_config_file(str(config), None)  # a bad file fails here, naming its line, not in the pod
    if args.run_name:
        raise ValueError("--run-name applies to local runs; a run in the cluster is named after its pipeline")
    module, info = module_of(args.module, args.module_in_image)
    check_params(info, list(split_params(args.param)), module or Path(args.module))
    opts = build(PodOptions, **options_from_args(args))
    objects = run_job_manifests(opts, module, info.attr, args.param, info.name, config)
    job = objects[-1]["metadata"]["name"]
    if args.output:
        Path(args.output).write_text(yaml.safe_dump_all(objects, sort_keys=False))
        kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        print(f"wrote {kinds} to {args.output} (kubectl apply -f {args.output})")
        return 0
    try:
        api = load_client()
        start_run_job(objects, api)
    except ClusterError as exc:
        print(f"dynpipe: {exc}", file=sys.stderr)
        return 1
    where = f"-n {opts.namespace}"
    if not args.wait:
        print(f"started Job {job} in namespace {opts.namespace} (pipeline {info.name!r});"
              f" follow it with: kubectl logs -f job/{job} {where}")
        return 0
    print(f"started Job {job} in namespace {opts.namespace} (pipeline {info.name!r}); following it", flush=True)
    ok, status = follow_job(api, opts.namespace, job, pending_timeout=opts.settings().pending_timeout)
    print(f"dynpipe: {status}")
    return 0 if ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    if args.on == "kubernetes":
        return run_on_kubernetes(args)
    pod_only = ("image", "namespace", "service_account", "env", "env_secret", "secret_env", "gpu", "cpu", "memory",
                "toleration", "module_in_image", "store_claim", "allow_local_store", "wait", "output")
    given = [o for o in pod_only if getattr(args, o)]
    if given:
        shown = ", ".join("--" + o.replace("_", "-") for o in given)
        raise ValueError(f"{shown}: only with --on kubernetes (the options of the run's pod)")
    # The run's origin is the module it names, not the dynpipe command (this process runs it alone).
    os.environ.setdefault("DYNPIPE_RUN_ORIGIN", args.module)
    try:
        run = run_module(args.module, args.param, args.config, args.run_name)
    except DynpipeError as exc:
        if not isinstance(exc, (ConfigError, TypeError)):
            raise
        print(f"dynpipe: {exc}", file=sys.stderr)
        return 2
    print(f"run {run.name}: {run.status.value}")
    return 0 if run.status.value == "completed" else 1


def add_run_command(sub: Any) -> None:
    """Register ``dynpipe run`` on the CLI's subparsers."""
    from .pod_options import add_pod_arguments

    text = "run a pipeline module once: MODULE [-p NAME=VALUE]... [--config FILE] [--on kubernetes ...]"
    p = sub.add_parser("run", help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  dynpipe run train.py -p epochs=5\n"
                              "  dynpipe run train.py:train -p epochs=5 --on kubernetes --image registry/ml:1.2 --wait")
    p.add_argument("module", help="file.py[:pipeline] or package.module[:pipeline], e.g. train.py:train")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline parameter, repeatable, e.g. -p epochs=5")
    p.add_argument("--config", help="YAML config template applied to the run, e.g. --config run.yaml")
    p.add_argument("--run-name", help="the run's name; {date}, {time} and {run_id} are filled in,"
                                      " e.g. --run-name nightly-{date}-{time}")
    p.add_argument("--on", choices=("local", "kubernetes"), default="local",
                   help="local: this process orchestrates; kubernetes: a Job in the cluster does (default local),"
                        " e.g. --on kubernetes")
    k = p.add_argument_group("the run's pod (--on kubernetes)")
    add_pod_arguments(k, ttl_default=24 * 3600)
    k.add_argument("--wait", action="store_true", help="follow the Job until it ends, printing its log and status,"
                                                       " e.g. --wait")
    k.add_argument("-o", "--output", help="write the ConfigMap and Job to this file instead of creating them,"
                                          " e.g. -o run.yaml")
    p.set_defaults(func=cmd_run)
