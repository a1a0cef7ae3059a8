"""A user's type checker sees what the package gives: the names monotone hands on
lazily (Monotone, Cursor, Event, Batch) are real types to mypy, not Any."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

pytest.importorskip("mypy", reason="mypy is in the test extras: pip install '.[test]'")

USER = textwrap.dedent("""\
    import monotone

    db = monotone.Monotone()
    reveal_type(db)
    reveal_type(db.cursor())
    for event in db.cursor():
        reveal_type(event)
        reveal_type(event.id)
        reveal_type(event.value)
    reveal_type(monotone.Batch.of)
    reveal_type(monotone.MonotoneError)
""")


def test_mypy_sees_the_types_of_a_users_script(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(USER)
    env = {**os.environ, "MYPYPATH": ROOT}
    run = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent",
                          "--cache-dir", str(tmp_path / "cache"), str(script)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    # mypy's spelling varies by version: builtins.int or int, Union[int, None] or int | None
    revealed = [re.sub(r"Union\[(\w+), None\]", r"\1 | None", name.replace("builtins.", ""))
                for name in re.findall(r'Revealed type is "([^"]+)"', run.stdout)]
    assert revealed[:5] == ["monotone.client.Monotone", "monotone.cursor.Cursor",
                            "monotone.event.Event", "int | None", "bytes"], run.stdout + run.stderr
    assert "monotone.event.Batch" in revealed[5], run.stdout
    assert "monotone.errors.MonotoneError" in revealed[6], run.stdout
    assert "Any" not in " ".join(revealed), run.stdout
    assert " error:" not in run.stdout, run.stdout
