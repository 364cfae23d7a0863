"""Turn a notebook into a pipeline module that behaves like the notebook, or say why not.

- Set-up cells (every code cell before the first ``%%pipeline NAME`` cell, and later cells
  that define functions, classes or imports) become the module's top, in notebook order.
- The ``%%pipeline NAME`` cells of the run, in order, become the body of one
  ``@pipeline(dynamic=True)`` function (a ``--new`` cell starts the body over); ``--mode``
  and ``--config`` come from the cell that started the run, as in the kernel.
- The cell tagged ``parameters`` (papermill's convention) becomes the function's parameters.
- Magics, shell escapes and top-level ``await`` are translated faithfully (see
  ``export_translate``) or the export stops with an error naming the cell and line.
- Each cell is marked ``# %% cell N`` (N counts every notebook cell from 1, markdown too).

    dynpipe export notebook.ipynb [-n NAME] [-o module.py]
"""

from __future__ import annotations

import argparse
import ast
import keyword
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TargetError
from .export_names import Parameter, bound_names, check_names, defines_something, free_reads, parameters_of
from .export_translate import (
    AWAIT_HELPER,
    Needs,
    indent_code,
    split_cell_magic,
    translate_cell,
    translate_cell_magic,
)

_RAISES = "raises-exception"
_END = re.compile(r"^\s*%pipeline\s+end\s+(\S+)\s*$")

_AWAIT_SOURCE = f'''

def {AWAIT_HELPER}(awaitable):
    """A cell's top-level ``await``: wait for it here (a module has no running event loop)."""
    import asyncio
    import concurrent.futures
    import contextvars

    async def wait():
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from a running loop
        return pool.submit(contextvars.copy_context().run, asyncio.run, wait()).result()
'''


class _MagicLine(argparse.ArgumentParser):
    """Parses a ``%%pipeline`` line like the magic does; errors raise instead of exiting."""

    def error(self, message: str) -> Any:
        raise TargetError(message)


def _pipeline_args(line: str) -> argparse.Namespace:
    parser = _MagicLine(prog="%%pipeline", add_help=False)
    parser.add_argument("name")
    parser.add_argument("--new", action="store_true")
    parser.add_argument("--config", default=None)
    parser.add_argument("--mode", default=None)
    parser.add_argument("--no-widget", action="store_true")
    return parser.parse_args(shlex.split(line))


@dataclass
class _Cell:
    number: int
    kind: str  # setup | pipeline | parameters | left-out | note
    code: str = ""
    header: str = ""
    raises: bool = False
    tree: ast.Module | None = None
    effects: int = 0
    source: str = ""


@dataclass
class _Plan:
    name: str | None
    cells: list[_Cell] = field(default_factory=list)
    params: list[Parameter] = field(default_factory=list)
    mode: str | None = None
    config: str | None = None
    needs: Needs = field(default_factory=Needs)


def _translate(cell: _Cell, source: str, needs: Needs, where: str) -> None:
    before = needs.effects
    try:
        magic = split_cell_magic(source)
        cell.code = translate_cell_magic(*magic, needs) if magic else translate_cell(source, needs)
        cell.tree = ast.parse(cell.code)
    except TargetError as exc:
        raise TargetError(f"{where}: cell {cell.number}, {exc}") from None
    cell.effects = needs.effects - before


def _ends(source: str, name: str | None) -> bool:
    """The cell runs ``%pipeline end NAME``."""
    return any((m := _END.match(line)) is not None and m.group(1) == name for line in source.splitlines())


def _plan(nb: Any, name: str | None, where: str) -> _Plan:
    plan = _Plan(name)
    started = ended = False
    for number, nb_cell in enumerate(nb.cells, start=1):
        if nb_cell.cell_type != "code" or not nb_cell.source.strip():
            continue
        source: str = nb_cell.source
        tags = set(nb_cell.get("metadata", {}).get("tags", []))
        cell = _Cell(number, "setup", raises=_RAISES in tags, source=source)
        magic = split_cell_magic(source)
        if "parameters" in tags and not plan.params:
            plan.params = parameters_of(source, f"{where}: cell {number} (tagged parameters)")
            cell.kind = "parameters"
        elif magic is not None and magic[0] == "pipeline":
            try:
                args = _pipeline_args(magic[1])
            except TargetError as exc:
                raise TargetError(f"{where}: cell {number}: %%pipeline {magic[1]}: {exc}") from None
            if args.mode is not None:
                from ..config import ExecutionMode

                try:
                    ExecutionMode(args.mode)
                except ValueError:
                    modes = ", ".join(m.value for m in ExecutionMode)
                    raise TargetError(
                        f"{where}: cell {number}: unknown --mode {args.mode!r} (use one of: {modes})"
                    ) from None
            plan.name = plan.name or args.name
            cell.header = f"%%pipeline {magic[1]}"
            if args.name != plan.name:
                cell.kind, cell.header = "note", f"{cell.header}  [another run: left out]"
            else:
                if args.new or not started or ended:
                    ended = False
                    for old in plan.cells:
                        if old.kind == "pipeline":
                            old.kind, old.header = (
                                "note",
                                f"{old.header}  [an earlier run; cell {number} starts a new one: left out]",
                            )
                    plan.mode, plan.config, started = args.mode, args.config, True
                elif args.mode or args.config:
                    cell.header += "  [--mode/--config ignored: they apply when a run starts]"
                cell.kind = "pipeline"
                _translate(cell, magic[2], plan.needs, where)
            if cell.kind == "note":
                try:  # only for the name checks: this code does not go into the module
                    cell.tree = ast.parse(translate_cell(magic[2], Needs()))
                except (TargetError, SyntaxError):
                    pass
        else:
            # After "%pipeline end NAME" the next %%pipeline NAME cell starts a new run.
            ended = ended or _ends(source, plan.name)
            _translate(cell, source, plan.needs, where)
            if started and not defines_something(cell.tree, cell.effects):  # type: ignore[arg-type]
                cell.kind = "left-out"
        plan.cells.append(cell)
    if plan.name is None or not started:
        raise TargetError(f"{where}: no %%pipeline {plan.name or name or 'NAME'} cell to export")
    return plan


def _config_option(
    plan: _Plan, notebook: Path, output: Path | None, setup: set[str], where: str
) -> tuple[str, list[str]]:
    """The module's path expression for the run's ``--config`` file, and the steps it configures."""
    from ..config_yaml import load_config_file

    assert plan.config is not None
    file = Path(plan.config)
    absolute = file if file.is_absolute() else notebook.resolve().parent / file
    try:
        changes = load_config_file(absolute, None)
    except ValueError as exc:
        raise TargetError(f"{where}: --config of %%pipeline {plan.name}: {exc}") from None
    steps = sorted(changes.get("steps", {}))
    for step_name in steps:
        if step_name not in setup:
            raise TargetError(
                f"{where}: {absolute}: steps.{step_name}: no set-up cell defines a step function named"
                f" {step_name!r}, so the exported module cannot apply this config"
            )
    plan.needs.imports.add("os")
    if file.is_absolute():
        return repr(str(file)), steps
    base = output.resolve().parent if output is not None else notebook.resolve().parent
    relative = os.path.relpath(absolute, base)
    return f"os.path.join(os.path.dirname(os.path.abspath(__file__)), {relative!r})", steps


def _uses_display(plan: _Plan) -> bool:
    """Cells call ``display(...)``, which IPython provides as a builtin."""
    cells = [c for c in plan.cells if c.kind in ("setup", "pipeline") and c.tree is not None]
    if any("display" in bound_names(c.tree) for c in cells):  # type: ignore[arg-type]
        return False
    return any(var == "display" for c in cells for var, _ in free_reads(c.tree))  # type: ignore[arg-type]


def _block(cell: _Cell, indent: str) -> str:
    mark = f"{indent}# %% cell {cell.number}" + (f": {cell.header}" if cell.header else "") + "\n"
    if cell.kind == "note":
        return mark
    if cell.kind == "parameters":
        return mark + f"{indent}# (tagged parameters: they are the pipeline function's parameters)\n"
    if cell.kind == "left-out":
        note = f"{indent}# (left out: runs after the first %%pipeline cell and defines no function, class or import)\n"
        return (
            mark
            + note
            + "".join(f"{indent}# | {ln}" for ln in cell.source.rstrip("\n").splitlines(keepends=True))
            + "\n"
        )
    code = cell.code if cell.code.endswith("\n") else cell.code + "\n"
    empty = not (cell.tree and cell.tree.body)
    if cell.raises:
        body = indent_code(code + ("pass\n" if empty else ""), indent + "    ")
        return (
            mark
            + f"{indent}try:\n"
            + body
            + f"{indent}except Exception:  # tagged raises-exception: the notebook goes on after this error\n"
            + f"{indent}    traceback.print_exc()\n"
        )
    return mark + indent_code(code, indent)


@dataclass
class Exported:
    """An exported module: its source, pipeline function and parameters."""

    source: str
    function: str
    parameters: list[Parameter]


def export_notebook(path: str | Path, name: str | None = None, output: str | Path | None = None) -> str:
    """The source of a pipeline module for the ``%%pipeline NAME`` cells of ``path``.

    ``output`` (where the module will be written) only matters for a ``--config`` path,
    which the module finds relative to itself.
    """
    return export_module(path, name, output).source


def export_module(path: str | Path, name: str | None = None, output: str | Path | None = None) -> Exported:
    """Like ``export_notebook``, also naming the pipeline function and its parameters."""
    import nbformat

    notebook = Path(path)
    where = str(notebook)
    if not notebook.is_file():
        raise TargetError(f"{where}: no such notebook")
    nb = nbformat.read(str(notebook), as_version=4)
    plan = _plan(nb, name, where)
    check_names(plan.cells, {p.name for p in plan.params}, where)
    assert plan.name is not None
    if any(c.raises and c.kind in ("setup", "pipeline") for c in plan.cells):
        plan.needs.imports.add("traceback")
    setup_names: set[str] = set()
    for cell in plan.cells:
        if cell.kind == "setup" and cell.tree is not None:
            setup_names |= bound_names(cell.tree)
    config_expr, config_steps = (
        _config_option(plan, notebook, Path(output) if output else None, setup_names, where)
        if plan.config
        else (None, [])
    )
    func = re.sub(r"\W", "_", plan.name)
    func = func if func.isidentifier() and not func[0].isdigit() else f"pipeline_{func}"
    taken = set(setup_names).union(*(bound_names(c.tree) for c in plan.cells if c.kind == "pipeline" and c.tree))
    while func in taken or keyword.iskeyword(func):  # a step named like the run keeps its name
        func += "_pipeline"
    options = f"dynamic=True, name={plan.name!r}"
    if plan.mode:
        options += f", execution_mode={plan.mode!r}"
    if config_steps:
        options += f", depends_on=[{', '.join(config_steps)}]"
    head = [
        f'"""Pipeline {plan.name!r}, exported from {notebook.name} by dynpipe.\n\n'
        'Blocks are marked "# %% cell N": N counts the notebook\'s cells from 1 (markdown too).\n'
        '"""\n\n'
    ]
    head += [f"import {module}\n" for module in sorted(plan.needs.imports)]
    if _uses_display(plan):
        head.append("\nfrom IPython.display import display  # a builtin in the notebook, not in a module")
    head.append("\nfrom dynpipe import pipeline\n")
    if plan.needs.await_helper:
        head.append(_AWAIT_SOURCE)
    top = [_block(c, "") for c in plan.cells if c.kind in ("setup", "parameters", "left-out")]
    body = [_block(c, "    ") for c in plan.cells if c.kind in ("pipeline", "note")]
    signature = ", ".join(p.render() for p in plan.params)
    code = "".join(head) + "\n\n" + "\n".join(top)
    if not any(c.kind == "pipeline" and c.tree is not None and c.tree.body for c in plan.cells):
        body.append("    pass\n")
    code += f"\n\n@pipeline({options})\ndef {func}({signature}) -> None:\n" + "\n".join(body)
    if config_expr:
        mode = f", execution_mode={plan.mode!r}" if plan.mode else ""
        code += f"\n\n{func}.configure(config_path={config_expr}{mode})\n"
    code += f'\n\nif __name__ == "__main__":\n    run = {func}()\n    print(f"run {{run.name}}: {{run.status}}")\n'
    return Exported(code, func, plan.params)


def _notebook_of(shell: Any) -> str | None:
    """The notebook this kernel runs, as Jupyter (``__session__``, ``JPY_SESSION_NAME``) or
    VS Code (``__vsc_ipynb_file__``) tells the kernel."""
    for candidate in (
        shell.user_ns.get("__session__"),
        os.environ.get("JPY_SESSION_NAME"),
        shell.user_ns.get("__vsc_ipynb_file__"),
    ):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            return candidate
    return None


def export_magic(shell: Any, line: str) -> str:
    """``%pipeline export [NAME] [-o module.py] [--notebook PATH]``: export the saved notebook."""
    parser = _MagicLine(prog="%pipeline export", add_help=False)
    parser.add_argument("name", nargs="?", default=None)
    parser.add_argument("-o", "--output", default=None)
    parser.add_argument("--notebook", default=None)
    try:
        args = parser.parse_args(shlex.split(line))
    except TargetError as exc:
        raise TargetError(
            f"%pipeline export: {exc} (use: %pipeline export [NAME] [-o module.py] [--notebook PATH])"
        ) from None
    notebook = args.notebook or _notebook_of(shell)
    if notebook is None:
        raise TargetError("%pipeline export: cannot tell which notebook this kernel runs; pass --notebook PATH")
    exported = export_module(notebook, args.name, args.output)
    output = Path(args.output) if args.output else Path(notebook).with_name(f"{exported.function}_pipeline.py")
    output.write_text(exported.source)
    params = ", ".join(p.render() for p in exported.parameters)
    hint = " [-p NAME=VALUE]..." if params else ""
    return (
        f"wrote {output} from the saved {Path(notebook).name} (parameters: {params or 'none'});"
        f" run it with: dynpipe run {output}{hint}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dynpipe.notebook.export", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("notebook")
    parser.add_argument("-n", "--name", default=None, help="the %%pipeline run to export (default: the first)")
    parser.add_argument("-o", "--output", default=None, help="module path (default: stdout)")
    args = parser.parse_args(argv)
    source = export_notebook(args.notebook, args.name, args.output)
    if args.output:
        Path(args.output).write_text(source)
    else:
        print(source, end="")


if __name__ == "__main__":
    main()
