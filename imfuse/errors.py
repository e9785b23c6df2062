"""One error family for the whole project.

Library code raises these with messages a user can act on; the CLI prints one line
and exits 2 (bad input) or 1 (internal failure). See shared CONTRACTS.md.
"""


class ImfuseError(Exception):
    """Base class. `exit_code` 2 means the user's input or config was at fault."""

    exit_code = 2


class ImageError(ImfuseError):
    """An image could not be read, decoded or accepted (names the file in its message)."""


class ConfigError(ImfuseError):
    """Bad option values or combinations."""


class DataError(ImfuseError):
    """A prepared dataset is missing, incomplete or inconsistent."""


class ModelError(ImfuseError):
    """A model file or registry entry cannot be loaded or is incompatible."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights cannot be downloaded or found in the local cache."""


class TrainingError(ImfuseError):
    """Training cannot go on (e.g. the loss became NaN/Inf)."""

    exit_code = 1


class TrackingError(ImfuseError):
    """The MLflow tracking server or registry cannot be reached or refused a request."""


class ServingError(ImfuseError):
    """A serving request failed (client side); message carries the gRPC/REST status."""
