"""Every error a user can cause, for the whole package: the bottom layer, imported by all.

Every failure caused by input, environment or interruption (a bad file or option, an
existing output, a checkpoint of another run, a diverging training) is a :class:`DNeRVError`,
so the command line prints its one-line message and exits non-zero without a traceback;
anything else that reaches :func:`dnerv_fast.cli.main` is reported as a bug. Under it:

- :class:`UsageError`: a setting's value is not allowed (also a ``ValueError``);
- :class:`CodecError`: reading or writing videos, keyframes, ``.dnerv`` files and outputs;
- :class:`CheckpointError`: a checkpoint that is missing, damaged or of another run;
- :class:`TrainingError`: training cannot go on (:class:`TrainingDiverged`, data too large);
- :class:`Interrupted`: the user stopped a command.
"""


class DNeRVError(Exception):
    """Base class of every error a user of dnerv_fast can cause."""


class UsageError(DNeRVError, ValueError):
    """A setting's value is not allowed: out of its bounds, of the wrong type, or asking for
    the impossible in combination with others."""


class CodecError(DNeRVError):
    """Base class of the codec's errors: videos, keyframes, ``.dnerv`` files, outputs."""


class VideoReadError(CodecError):
    """A video file or frame folder could not be read."""


class VideoWriteError(CodecError):
    """Decoded frames could not be written."""


class KeyframeCodecError(CodecError):
    """Unknown keyframe codec, bad quality setting, or a keyframe that does not decode."""


class QuantizationError(CodecError):
    """Bad quantisation settings."""


class BitstreamError(CodecError):
    """A .dnerv file is not valid: wrong magic, version, lengths or checksum."""


class OutputExistsError(CodecError):
    """The output path exists and overwriting was not asked for."""


class CheckpointError(DNeRVError, ValueError):
    """A checkpoint (a training checkpoint, or reference weights for a model) is missing,
    unreadable, or does not match the run or the model; the message names what differs."""


class OutputPathError(CodecError):
    """An output cannot be written where it was asked for (missing or read-only folder, a
    file where a folder should go, or outputs that would mix with other files)."""


class TrainingError(DNeRVError):
    """Training cannot go on; the message says why and what to change."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite."""


class Interrupted(DNeRVError):
    """The user interrupted a command (Ctrl-C); the message says what was kept."""


class OutputLockedError(CodecError):
    """Another run is writing the same output; the message names its process id."""


class MemoryBudgetError(CodecError):
    """A file asks for more memory than the budget allows; the message says how much it asks
    for and how to allow it."""


class OutOfMemoryError(CodecError, MemoryError):
    """An allocation failed (in Python, NumPy or inside torch)."""


# How torch reports a failed allocation or write: a RuntimeError whose text says so.
_ALLOCATION_FAILED = ("out of memory", "DefaultCPUAllocator", "can't allocate memory",
                      "Cannot allocate memory", "std::bad_alloc")
_WRITE_FAILED = ("file write failed", "No space left on device", "Disk quota exceeded",
                 "PytorchStreamWriter failed")


def library_error(exc: BaseException, what: str) -> DNeRVError | None:
    """The package's error for a library's failure ``exc`` while doing ``what`` (an
    allocation or a write reported as MemoryError or torch's RuntimeError), or None when
    ``exc`` is not one of those and so remains a bug."""
    if isinstance(exc, DNeRVError):
        return exc
    text = str(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and
                                        any(s in text for s in _ALLOCATION_FAILED)):
        return OutOfMemoryError(f"out of memory while {what} "
                                f"({_telling_line(text, _ALLOCATION_FAILED, exc)})")
    if isinstance(exc, RuntimeError) and any(s in text for s in _WRITE_FAILED):
        return OutputPathError(f"cannot write while {what}: "
                               f"{_telling_line(text, _WRITE_FAILED, exc)}")
    return None


def _telling_line(text: str, signs: tuple[str, ...], exc: BaseException) -> str:
    """The line of a (multi-line) library message that says what failed, shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = next((x for x in lines if any(s in x for s in signs)),
                lines[0] if lines else type(exc).__name__)
    return line[:200]
