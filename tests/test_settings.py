"""What the project's settings do to every process that loads them (``kedro`` commands, ``kedro jupyter``)."""
from __future__ import annotations

import subprocess
import sys


def test_the_exit_skips_the_last_garbage_collections():
    """A TensorFlow process spends over a second of its exit collecting the objects TensorFlow made; the
    settings freeze them once every exit handler registered after the settings (MLflow's, TensorFlow's) has run."""
    code = ("import atexit, gc\n"
            "atexit.register(lambda: print('frozen at the last exit handler:', gc.get_freeze_count() > 0))\n"
            "import urban_detection.settings\n"
            "atexit.register(lambda: print('not yet frozen in a later handler:', gc.get_freeze_count() == 0))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-2:] == ["not yet frozen in a later handler: True",
                                                     "frozen at the last exit handler: True"]
