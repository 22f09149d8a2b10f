"""Errors users see. Each names the file or config field at fault and says what to do."""


class DpfairError(Exception):
    """Base class for every error dpfair raises on bad input."""


class ConfigError(DpfairError):
    """A benchmark config is invalid; the message names the key and the allowed values."""


class DatasetError(DpfairError):
    """A dataset module or the data it returned breaks the dataset contract."""


class PrivacyError(DpfairError):
    """Settings that would make a reported privacy guarantee wrong."""
