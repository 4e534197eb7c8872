"""Storage errors (root of this package)."""


class StorageError(Exception):
    pass
