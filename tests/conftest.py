import os
import pathlib
import sys

# Without a GPU, Triton kernels run on CPU tensors under the interpreter. Triton reads this
# when a kernel is defined, so it must be set before anything imports the kernels.
try:
    import torch
    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Lets tests import the shared helpers in this folder (op_cases) as plain modules.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
