"""Count the API calls of N isolated steps on the fake cluster: watch (now) vs polling (before).

Usage: ``PYTHONPATH=.:tests python tests/measure_k8s_api_calls.py [N] [SECONDS]``. The
polling runtime is the previous implementation, loaded from git history (``--polling-ref``).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kube_fixture import REPO, KubeCluster
from test_kubernetes_runtime import nap

from dynpipe.runtimes.task import StepTask


def _tasks(n: int, seconds: float, root: str) -> list[StepTask]:
    return [StepTask(run_id="0123456789abcdef0123456789abcdef", run_name="r", pipeline_name="p",
                     step_run_id=f"{i:016x}", invocation_id=f"nap_{i}", step_name="nap", func=nap,
                     parameters={"seconds": seconds}, inputs={}, input_annotations={}, outputs=[],
                     materializers={}, store_root=root, echo_logs=False) for i in range(n)]


def _polling_runtime(ref: str, batch: Any, core: Any) -> Any:
    source = subprocess.run(["git", "show", f"{ref}:dynpipe/runtimes/kubernetes.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "kubernetes_polling.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("dynpipe.runtimes.kubernetes_polling", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    settings = module.KubernetesSettings(namespace="pipelines", image="example/app:1", poll_interval=2.0)
    return module.KubernetesRuntime(settings, batch_api=batch, core_api=core)


def measure(mode: str, n: int, seconds: float, ref: str) -> Counter[str]:
    import os

    from dynpipe.runtimes.k8s import KubernetesRuntime

    os.environ["DYNPIPE_K8S_IMAGE"] = "example/app:1"
    os.environ["DYNPIPE_K8S_NAMESPACE"] = "pipelines"
    kube = KubeCluster().start()
    try:
        batch, core = kube.apis()
        runtime = _polling_runtime(ref, batch, core) if mode == "polling" else KubernetesRuntime(
            batch_api=batch, core_api=core)
        root = tempfile.mkdtemp()
        started = time.monotonic()
        launches = [runtime.launch(t) for t in _tasks(n, seconds, root)]
        for launch in launches:
            launch.result(timeout=600)
        elapsed = time.monotonic() - started
        counts: Counter[str] = Counter()
        for r in kube.client_requests():
            path = str(r.url.path)
            kind = ("watch" if r.params.get("watch") == "true" else
                    "log" if path.endswith("/log") else
                    "status" if path.endswith("/status") else str(getattr(r.method, "value", r.method)))
            counts[kind] += 1
        counts["total"] = sum(counts.values())
        print(f"{mode}: {n} steps of {seconds:g}s in {elapsed:.1f}s: {dict(counts)}", flush=True)
        return counts
    finally:
        kube.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=100)
    parser.add_argument("seconds", type=float, nargs="?", default=5.0)
    parser.add_argument("--polling-ref", default="2e0230a")
    parser.add_argument("--mode", choices=["watch", "polling", "both"], default="both")
    args = parser.parse_args()
    for mode in (["watch", "polling"] if args.mode == "both" else [args.mode]):
        measure(mode, args.n, args.seconds, args.polling_ref)


if __name__ == "__main__":
    main()
