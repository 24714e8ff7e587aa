"""The error types of the model zoo."""


class ModelSpecError(ValueError):
    """A model name, user-model spec, option or split that cannot be used.

    The message is one line saying what is wrong and what is valid, so a CLI can print it
    as a usage error (exit 2) without a traceback.
    """


class ManifestError(ValueError):
    """Manifest data or saved weights that do not describe a network this code can rebuild."""
