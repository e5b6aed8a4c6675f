"""pin_env.py - run the fixture generators in a fixed numeric environment.

Call pin() before torch is imported: if the environment is not already the
pinned one, it re-executes the script with it. One OpenBLAS thread, and
OpenBLAS's Haswell kernel (which every x86-64 machine here can run), so that
float64 results do not depend on which kernel OpenBLAS would pick for this
CPU (on an AVX-512 machine the SkylakeX or Sandybridge kernels give other
last bits) nor on the shell's OPENBLAS_CORETYPE; OPENBLAS_L2_SIZE, which
also changes the blocking, is removed.
"""
import os
import sys

_ENV = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1"}


def pin():
    if all(os.environ.get(k) == v for k, v in _ENV.items()) and "OPENBLAS_L2_SIZE" not in os.environ:
        return
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_L2_SIZE"}
    env.update(_ENV)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
