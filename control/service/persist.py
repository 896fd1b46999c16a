"""The learnt baseline on disk: saved in the state directory every
[daemon] baseline_save seconds and at stop, read back at start, so that a
restarted daemon judges traffic against what it had learnt (a daemon
restarted in the middle of an attack does not learn the attack).

One numpy .npz file (no pickles), written to a temporary file, synced and
renamed over the old one: a crash leaves the old baseline or the new one,
never half of one. A file that cannot be read is set aside (renamed with
a .bad suffix, never deleted) and the daemon starts learning afresh.
"""

from __future__ import annotations

import os
import time
import zipfile
from typing import Optional

import numpy as np

from seawall.control.config import Config
from seawall.control.detect.baseline import Baseline


def save(path: str, base: Baseline, t: float, wall: Optional[float] = None) -> int:
    """Write base (engine time t, wall-clock time wall) to path; returns
    the bytes written. Raises OSError."""
    arrays = base.to_arrays(t)
    arrays["saved_at"] = np.array([time.time() if wall is None else wall])
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return size


def load(path: str, cfg: Config, t: float, wall: Optional[float] = None) -> tuple:
    """(Baseline or None, what happened: one line for the log). A missing
    file is a first start; a damaged one is renamed to path.bad."""
    d = cfg.detection
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        saved_at = float(np.asarray(arrays.pop("saved_at")).reshape(-1)[0])
        age = (time.time() if wall is None else wall) - saved_at
        base = Baseline.from_arrays(arrays, t, age, d.baseline_window, d.quantile, d.mix_window)
    except FileNotFoundError:
        return None, "no saved baseline: learning from calm traffic"
    except (OSError, ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile, EOFError) as e:
        bad = path + ".bad"
        try:
            os.replace(path, bad)
            kept = f"set aside as {bad}"
        except OSError as e2:
            kept = f"left in place ({e2.strerror})"
        return None, f"saved baseline unreadable ({e}): {kept}; learning afresh"
    return base, (f"baseline restored: {base.seconds:.0f} s of calm traffic learnt, saved {max(age, 0):.0f} s ago")
