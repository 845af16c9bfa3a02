import os
import pathlib
import sys

from dnerv_fast.allocator import keep_large_blocks_on_heap

# Benches import test helpers as plain modules: the research-code-layout D-NeRV forward
# (tests/composed_dnerv.py), a baseline here too, and the op case builders (tests/op_cases.py),
# so a benchmark times the inputs the parity tests check. One folder of helpers, not a second
# copy inside the package: they are test code, and the wheel should not ship them.
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))

# DNERV_BENCH_MALLOC=heap runs every variant the way the dnerv-fast commands run (big blocks
# kept on the heap, see dnerv_fast.allocator); the default is glibc's stock malloc.
if os.environ.get("DNERV_BENCH_MALLOC") == "heap" and not keep_large_blocks_on_heap():
    raise RuntimeError("DNERV_BENCH_MALLOC=heap: mallopt is not available here (glibc only)")
