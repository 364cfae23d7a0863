"""Translate one notebook cell into plain Python, line for line, or refuse with a clear error.

IPython's own ``TransformerManager`` finds the magics (``%env``, ``x = %time f()``, ``!cmd``,
``obj?``) so we agree with the kernel on what is a magic; each is replaced by faithful Python
or stops the export naming the cell and line. Source is edited by line ranges taken from
``ast`` positions (never ``ast.unparse``) so comments and quoting survive, and a translated
cell keeps its line count: line N of the cell is line N of its block in the module.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
import tokenize
from dataclasses import dataclass, field
from typing import Any

from ..errors import TargetError

# Line magics that only change the notebook's display or the kernel's own set-up: a module
# does not need them, so they become comments.
NOTEBOOK_ONLY = frozenset(
    {
        "load_ext",
        "reload_ext",
        "unload_ext",
        "matplotlib",
        "config",
        "autoreload",
        "aimport",
        "pipeline",
        "who",
        "whos",
        "lsmagic",
        "history",
        "pinfo",
        "pinfo2",
        "pdef",
        "pdoc",
        "psource",
        "pfile",
        "magic",
        "quickref",
        "xmode",
        "colors",
        "pprint",
        "autoawait",
    }
)
# Cell magics whose cell only shows something (no effect a module could miss).
DISPLAY_CELL_MAGICS = frozenset({"html", "javascript", "js", "markdown", "latex", "svg"})
AWAIT_HELPER = "_run_await"


@dataclass
class Needs:
    """What the translated code uses that the module header must provide."""

    imports: set[str] = field(default_factory=set)
    await_helper: bool = False
    effects: int = 0  # magics translated into code with an effect (%env, %cd, !cmd)


def _fail(line: int, message: str) -> TargetError:
    """An error for the cell's line; ``export`` prefixes the notebook and cell."""
    return TargetError(f"line {line}: {message}")


# -- magics ----------------------------------------------------------------------------------


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _ipython_call(node: ast.AST) -> tuple[str, list[str]] | None:
    """``get_ipython().METHOD('a', 'b')`` -> ("METHOD", ["a", "b"])."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "get_ipython"):
        return None
    args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return node.func.attr, args


def _no_expansion(line: int, what: str, arg: str) -> None:
    if "$" in arg or re.search(r"\{[^}]*\}", arg):
        raise _fail(
            line, f"{what} uses IPython's $name/{{expr}} expansion, which a module cannot do; write it as Python"
        )


def _env(line: int, arg: str, target: str | None, needs: Needs) -> str | None:
    _no_expansion(line, "%env", arg)
    arg = arg.strip()
    if "=" in arg or " " in arg:
        sep = "=" if "=" in arg else " "
        name, _, value = arg.partition(sep)
        if target is not None:
            raise _fail(line, "'x = %env NAME=VALUE' has no value to assign; write os.environ[...] = ... instead")
        needs.imports.add("os")
        needs.effects += 1
        return f"os.environ[{name.strip()!r}] = {value.strip()!r}"
    if target is None:
        return None  # shows a variable (or all): display only
    needs.imports.add("os")
    return f"{target} = os.environ[{arg!r}]" if arg else f"{target} = dict(os.environ)"


def _translate_magic(line: int, code: str, original: str, needs: Needs) -> str | None:
    """Python for one magic IPython turned into ``code``; None means "drop, notebook only"."""
    tree = ast.parse(code)
    stmt = tree.body[0]
    target: str | None = None
    value: ast.AST = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign)) else stmt
    if isinstance(stmt, ast.Assign):
        target = ast.get_source_segment(code, stmt.targets[0])
    call = _ipython_call(value)
    if call is None:
        return code.strip()  # autocall and friends: IPython already wrote plain Python
    method, args = call
    if method == "run_line_magic" and len(args) == 2:
        name, arg = args
        if name == "time":
            if not arg.strip():
                return None
            return f"{target} = {arg.strip()}" if target else arg.strip()
        if name == "env":
            return _env(line, arg, target, needs)
        if name == "cd" and target is None and arg.strip() and not arg.strip().startswith("-"):
            _no_expansion(line, "%cd", arg)
            needs.imports.add("os")
            needs.effects += 1
            return f"os.chdir(os.path.expanduser({arg.strip()!r}))"
        if name in NOTEBOOK_ONLY and target is None:
            return None
        raise _fail(
            line, f"%{name} has no plain-Python equivalent in an exported module; remove it or write it as Python"
        )
    if method == "system" and target is None and args:
        _no_expansion(line, "!", args[0])
        needs.imports.add("subprocess")
        needs.effects += 1
        return f"subprocess.run({args[0]!r}, shell=True, check=False)"
    raise _fail(line, f"{original!r} (a shell or magic command) cannot be exported; write it as Python")


def _diff(old: list[str], new: list[str]) -> tuple[int, int, int]:
    """The changed region: ``old[a:b]`` became ``new[a:c]``."""
    a = 0
    while a < min(len(old), len(new)) and old[a] == new[a]:
        a += 1
    s = 0
    while s < min(len(old), len(new)) - a and old[-1 - s] == new[-1 - s]:
        s += 1
    return a, len(old) - s, len(new) - s


def translate_magics(lines: list[str], needs: Needs) -> list[str]:
    """Replace every line magic / shell escape, keeping the number of lines."""
    from IPython.core.inputtransformer2 import TransformerManager, make_tokens_by_line

    manager = TransformerManager()
    current = list(lines)
    for _ in range(len(lines) + 1):
        tokens = make_tokens_by_line(current)
        transformers: list[Any] = list(manager.token_transformers)
        found = [f for f in (t.find(tokens) for t in transformers) if f]
        if not found:
            return current
        first = min(found, key=lambda f: f.sortby())
        new = first.transform(list(current))
        a, b, c = _diff(current, new)
        if b <= a:  # a transformer that only inserted lines: nothing of ours to map
            raise _fail(a + 1, f"cannot map IPython's rewrite of {''.join(current[a : a + 1]).strip()!r}")
        original = "".join(current[a:b]).strip()
        python = _translate_magic(a + 1, "".join(new[a:c]).strip() + "\n", original, needs)
        indent = _indent_of(current[a])
        if python is None:
            python = "pass" if indent else ""
            python += (
                f"  # {original}  [notebook only, left out by export]"
                if python
                else f"# {original}  [notebook only, left out by export]"
            )
        replacement = [indent + python + "\n"] + ["\n"] * (b - a - 1)
        current[a:b] = replacement
    raise _fail(1, "too many IPython rewrites")


# -- awaits and display-only lines -----------------------------------------------------------


def _top_level_awaits(tree: ast.AST) -> list[ast.Await]:
    found: list[ast.Await] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return
        if isinstance(node, (ast.AsyncFor, ast.AsyncWith)) or (isinstance(node, ast.comprehension) and node.is_async):
            line: int = getattr(node, "lineno", 0) or getattr(getattr(node, "target", None), "lineno", 1)
            raise _fail(
                line, "top-level 'async for'/'async with' cannot run in a plain module; move it into an async function"
            )
        if isinstance(node, ast.Await):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _pure(node: ast.AST) -> bool:
    """An expression whose only effect in a cell is to be displayed."""
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, ast.Attribute):
        return _pure(node.value)
    if isinstance(node, ast.Subscript):
        return _pure(node.value) and _pure(node.slice)
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_pure(e) for e in node.elts)
    return False


def _edit(lines: list[bytes], edits: list[tuple[int, int, int, int, bytes]]) -> None:
    """Apply (line, col, end_line, end_col, text) replacements, last first (byte columns)."""
    for line, col, end_line, end_col, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        head = lines[line - 1][:col]
        tail = lines[end_line - 1][end_col:]
        lines[line - 1 : end_line] = [head + text + tail] + [b"\n"] * (end_line - line)


def translate_cell(source: str, needs: Needs) -> str:
    """The cell as plain Python with the same number of lines, or ``TargetError``."""
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines = translate_magics(lines, needs)
    text = "".join(lines)
    try:
        tree = compile(
            text, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
    except SyntaxError as exc:
        raise _fail(exc.lineno or 1, f"invalid syntax: {exc.msg}") from None
    raw = [ln.encode() for ln in lines]
    edits: list[tuple[int, int, int, int, bytes]] = []
    for node in _top_level_awaits(tree):
        needs.await_helper = True
        value = node.value
        edits.append((node.lineno, node.col_offset, value.lineno, value.col_offset, AWAIT_HELPER.encode() + b"("))
        edits.append(
            (
                node.end_lineno or node.lineno,
                node.end_col_offset or 0,
                node.end_lineno or node.lineno,
                node.end_col_offset or 0,
                b")",
            )
        )
    body = tree.body
    if body and isinstance(body[-1], ast.Expr) and _pure(body[-1].value) and body[-1].lineno == body[-1].end_lineno:
        last = body[-1]
        line = raw[last.lineno - 1]
        rest = line[last.end_col_offset or 0 :].strip()
        if line[: last.col_offset].strip() == b"" and (not rest or rest.startswith((b";", b"#"))):
            shown = line[last.col_offset :].rstrip(b"\n")
            edits = [e for e in edits if e[0] != last.lineno]
            edits.append(
                (last.lineno, last.col_offset, last.lineno, len(line.rstrip(b"\n")), b"pass  # display only: " + shown)
            )
    _edit(raw, edits)
    return b"".join(raw).decode()


def split_cell_magic(source: str) -> tuple[str, str, str] | None:
    """``%%name args\\nbody`` -> (name, args, body); None for a cell without a cell magic."""
    first, _, body = source.partition("\n")
    if not first.startswith("%%"):
        return None
    name, _, args = first[2:].partition(" ")
    return name.strip(), args.strip(), body


def translate_cell_magic(name: str, args: str, body: str, needs: Needs) -> str:
    """A non-pipeline cell magic: ``%%time``/``%%capture`` run their body; display ones drop it."""
    if name == "time" or (name == "capture" and not [w for w in shlex.split(args) if not w.startswith("-")]):
        return f"# %%{name} {args}".rstrip() + "  [notebook only]\n" + translate_cell(body, needs)
    if name in DISPLAY_CELL_MAGICS:
        return "".join(f"# {ln}" for ln in f"%%{name} {args}\n{body}".splitlines(keepends=True)) + "\n"
    raise _fail(
        1, f"cell magic %%{name} has no plain-Python equivalent in an exported module; write the cell as Python"
    )


def indent_code(code: str, prefix: str) -> str:
    """Indent ``code`` by ``prefix`` except inside multi-line strings (their text must not change)."""
    keep: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                keep.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    out = []
    for number, line in enumerate(code.splitlines(keepends=True), start=1):
        out.append(line if number in keep or not line.strip() else prefix + line)
    return "".join(out)
