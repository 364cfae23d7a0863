"""Turn a notebook into a pipeline module: setup cells + the ``%%pipeline NAME`` cells.

The code cells before the first ``%%pipeline NAME`` cell (imports, step definitions; line
magics and shell escapes dropped) become the module's top; the bodies of the
``%%pipeline NAME`` cells, in order, become the body of one ``@pipeline(dynamic=True)``
function (a ``--new`` cell starts the body over). Top-level ``await f`` becomes
``f.result()``. The module runs with ``python module.py`` and can be scheduled.

    python -m dynpipe.notebook.export notebook.ipynb [-n NAME] [-o module.py]
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import textwrap
from pathlib import Path

_MAGIC = re.compile(r"^\s*%%pipeline\s+(.*)$")


class _AwaitToResult(ast.NodeTransformer):
    def visit_Await(self, node: ast.Await) -> ast.AST:  # noqa: N802 - ast API
        value = self.visit(node.value)
        return ast.Call(func=ast.Attribute(value=value, attr="result", ctx=ast.Load()), args=[], keywords=[])


def _strip_magics(source: str) -> str:
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines).strip()


def _unawait(source: str) -> str:
    if "await" not in source:
        return source
    tree = compile(source, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    return ast.unparse(ast.fix_missing_locations(_AwaitToResult().visit(tree)))


def export_notebook(path: str | Path, name: str | None = None) -> str:
    """The source of a pipeline module for the ``%%pipeline NAME`` cells of ``path``."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    setup: list[str] = []
    body: list[str] = []
    mode: str | None = None
    seen_pipeline = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        first, _, rest = cell.source.partition("\n")
        match = _MAGIC.match(first)
        if match is None:
            if not seen_pipeline:
                code = _strip_magics(cell.source)
                if code:
                    setup.append(code)
            continue
        words = shlex.split(match.group(1))
        cell_name = words[0] if words else ""
        if name is None:
            name = cell_name
        if cell_name != name:
            continue
        seen_pipeline = True
        if "--new" in words:
            body = []
        if "--mode" in words and words.index("--mode") + 1 < len(words):
            mode = words[words.index("--mode") + 1]
        code = _unawait(_strip_magics(rest))
        if code:
            body.append(code)
    if name is None or not seen_pipeline:
        raise ValueError(f"{path}: no %%pipeline {name or 'NAME'} cell to export")
    func = re.sub(r"\W", "_", name)
    func = func if func.isidentifier() and not func[0].isdigit() else f"pipeline_{func}"
    options = f"dynamic=True, name={name!r}" + (f", execution_mode={mode!r}" if mode else "")
    inner = textwrap.indent("\n\n".join(body) or "pass", "    ")
    return (
        f'"""Pipeline {name!r}, exported from {Path(path).name} by dynpipe."""\n\n'
        "from dynpipe import pipeline\n\n"
        + "\n\n".join(setup)
        + f"\n\n\n@pipeline({options})\ndef {func}() -> None:\n{inner}\n\n\n"
        f'if __name__ == "__main__":\n    run = {func}()\n    print(f"run {{run.name}}: {{run.status}}")\n'
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dynpipe.notebook.export", description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("-n", "--name", default=None, help="the %%pipeline run to export (default: the first)")
    parser.add_argument("-o", "--output", default=None, help="module path (default: stdout)")
    args = parser.parse_args(argv)
    source = export_notebook(args.notebook, args.name)
    if args.output:
        Path(args.output).write_text(source)
    else:
        print(source, end="")


if __name__ == "__main__":
    main()
