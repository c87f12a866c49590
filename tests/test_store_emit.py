"""The emitter's file writing, and a store that cannot be written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.cli import main
from aggregator.emit import write_if_changed
from aggregator.errors import EmitError
from tests.helpers import write_config


def test_unwritable_store_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "db-is-a-folder").mkdir()
    path = write_config(tmp_path, '[feed]\ntitle = "x"\n[store]\npath = "db-is-a-folder"\n')
    assert main(["refresh", "-c", str(path)]) == 3
    err = capsys.readouterr().err
    assert "db-is-a-folder" in err and len(err.strip().splitlines()) == 1


def test_write_if_changed_is_atomic_and_skips_equal_bytes(tmp_path: Path) -> None:
    assert write_if_changed(tmp_path, "feed.atom", b"one") is True
    mtime = (tmp_path / "feed.atom").stat().st_mtime_ns
    assert write_if_changed(tmp_path, "feed.atom", b"one") is False
    assert (tmp_path / "feed.atom").stat().st_mtime_ns == mtime
    assert write_if_changed(tmp_path, "feed.atom", b"two") is True
    assert (tmp_path / "feed.atom").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["feed.atom"]  # no temp file left


@pytest.mark.parametrize("name", ["../escape.atom", "a/b", "..", ""])
def test_write_if_changed_never_leaves_the_folder(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(EmitError):
        write_if_changed(out, name, b"x")
    assert not (tmp_path / "escape.atom").exists()


def test_full_disk_keeps_the_previous_output(tmp_path: Path) -> None:
    """A write that fails half-way (a file size limit standing in for a full disk)."""
    out = tmp_path / "out"
    write_if_changed(out, "feed.atom", b"old")
    script = f"""
import resource, signal, sys
from pathlib import Path
from aggregator.emit import write_if_changed
from aggregator.errors import EmitError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
try:
    write_if_changed(Path({str(out)!r}), "feed.atom", b"n" * 100_000)
except EmitError as exc:
    print("EmitError:", exc)
    sys.exit(0)
sys.exit(1)
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "cannot write" in run.stdout
    assert (out / "feed.atom").read_bytes() == b"old"
    assert sorted(p.name for p in out.iterdir()) == ["feed.atom"]
