import pathlib
import sys

# The research-code-layout D-NeRV forward (tests/composed_dnerv.py) is a baseline here too.
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
