"""The errors cf_lightning raises on purpose: each names the file, line or key, and the fix."""


class CFLightningError(Exception):
    """Base class of every error this package raises on purpose."""


class DataFormatError(CFLightningError, ValueError):
    """A data file does not have the expected MovieLens format."""


class DataNotFoundError(CFLightningError, FileNotFoundError):
    """No copy of the data set was found and none could be downloaded."""


class ChecksumError(CFLightningError):
    """A downloaded or given archive does not have the expected checksum."""


class UnsafeArchiveError(CFLightningError):
    """An archive entry would be written outside the target folder."""


class ConfigError(CFLightningError, ValueError):
    """A configuration value is invalid; the message names the key."""


class NonFiniteLossError(CFLightningError, FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and what to change."""


class CheckpointMismatchError(CFLightningError, ValueError):
    """A checkpoint does not fit the data or model it is loaded with (e.g. another vocabulary)."""


class ResultWriteError(CFLightningError, OSError):
    """A result file or checkpoint could not be written (disk full, read-only folder); the old one stays."""


class RunFolderError(CFLightningError):
    """A run folder is in use by another run, or already holds a run that this one would mix with."""


class FoldInUnsupported(CFLightningError):
    """A model cannot rank users it never trained on (strong generalization's held-out users)."""
