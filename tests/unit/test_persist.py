"""control/service/persist.py: the baseline on disk, atomically, and a
damaged file set aside rather than trusted or lost."""

from __future__ import annotations

import os

import numpy as np
import pytest

from seawall.control.config import Config
from seawall.control.service import persist

from test_engine import Run, cfg


def learnt(cycles: int = 20):
    r = Run(cfg())
    r.calm(cycles)
    return r


def test_save_then_load_gives_the_same_reference(tmp_path):
    r = learnt()
    path = str(tmp_path / "baseline.npz")
    size = persist.save(path, r.eng.base, float(r.t), wall=1000.0)
    assert size == os.path.getsize(path) > 0
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    base, said = persist.load(path, r.eng.cfg, 0.0, wall=1000.0)
    assert base is not None and said.startswith("baseline restored: 20 s of calm traffic")
    assert base.volumes.reference(1000, {})[0] == r.eng.base.volumes.reference(1000, {})[0]
    assert not os.path.exists(path + ".tmp")


def test_an_old_baseline_fades_as_a_day_would_have_faded_it(tmp_path):
    r = learnt()
    path = str(tmp_path / "baseline.npz")
    persist.save(path, r.eng.base, float(r.t), wall=1000.0)
    day = Config().detection.baseline_window
    fresh, _ = persist.load(path, r.eng.cfg, 0.0, wall=1000.0)
    old, _ = persist.load(path, r.eng.cfg, 0.0, wall=1000.0 + day)
    assert old.volumes.weight == pytest.approx(fresh.volumes.weight * np.exp(-1.0), rel=1e-12)


def test_missing_file_is_a_first_start(tmp_path):
    base, said = persist.load(str(tmp_path / "nothing.npz"), Config(), 0.0)
    assert base is None and "no saved baseline" in said


def test_damaged_file_is_set_aside_not_deleted(tmp_path):
    path = tmp_path / "baseline.npz"
    path.write_bytes(b"PK\x03\x04 not a zip at all")
    base, said = persist.load(str(path), Config(), 0.0)
    assert base is None and "unreadable" in said and "set aside" in said
    assert not path.exists()
    assert (tmp_path / "baseline.npz.bad").read_bytes() == b"PK\x03\x04 not a zip at all"


def test_a_foreign_npz_is_refused(tmp_path):
    path = str(tmp_path / "baseline.npz")
    np.savez(open(path, "wb"), format=np.array([1]), total=np.zeros(3), saved_at=np.array([0.0]))
    base, said = persist.load(path, Config(), 0.0, wall=0.0)
    assert base is None and "unreadable" in said


def test_save_failure_leaves_the_old_file(tmp_path):
    r = learnt()
    path = str(tmp_path / "baseline.npz")
    persist.save(path, r.eng.base, float(r.t))
    before = open(path, "rb").read()
    os.chmod(tmp_path, 0o500)
    try:
        if os.geteuid() == 0:  # root writes anyway: make the temporary name a directory instead
            os.chmod(tmp_path, 0o700)
            os.mkdir(path + ".tmp")
        try:
            persist.save(path, r.eng.base, float(r.t))
            raise AssertionError("save should have failed")
        except OSError:
            pass
    finally:
        os.chmod(tmp_path, 0o700)
    assert open(path, "rb").read() == before
