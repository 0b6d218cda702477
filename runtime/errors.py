"""The errors a user can cause. The CLI prints each as one line and exits non-zero."""


class MnistEdgeError(Exception):
    """Base class: a problem with the user's input, files or environment, not a bug."""

    exit_code = 2


class InputError(MnistEdgeError):
    """An array, image file or argument that does not fit what the model takes."""


class DataError(MnistEdgeError):
    """MNIST data that is missing, malformed or fails its checksum."""


class ModelError(MnistEdgeError):
    """A model file that is missing, unreadable, or of another input/output contract."""


class ParityError(MnistEdgeError):
    """An exported model that disagrees with its source beyond the tolerances."""

    exit_code = 1


class MissingExtraError(MnistEdgeError):
    """A workstation command run where the training extra is not installed."""


class OutputError(MnistEdgeError):
    """A file that cannot be written: read-only folder, disk full, a path that is not a folder."""


class Interrupted(MnistEdgeError):
    """A model call stopped by Ctrl-C, a time limit or a server's stop."""

    exit_code = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class ClosedPipe(MnistEdgeError):
    """The reader of stdout has gone (`mnist-edge predict ... | head -1`): stop quietly."""

    exit_code = 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe stopped


class BusyWarning(UserWarning):
    """Measurements taken while other processes, or the hypervisor, took the CPU."""


class InputWarning(UserWarning):
    """Input that was accepted after a conversion the user should know about."""
