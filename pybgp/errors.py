"""The one small exception tree of pybgp.

Every error a user can cause carries a message that names what is wrong; the
CLI prints ``str(exc)`` on one line and exits 1, the CNI plugin maps the class
to a CNI error code. Nothing here imports anything from pybgp.
"""

from __future__ import annotations


class PybgpError(Exception):
    """Base of every error pybgp raises on purpose."""


class ValidationError(PybgpError):
    """A resource, file or config is malformed.

    ``field`` is the dotted path of the offending field (``spec.cidr``) when
    known; ``source`` names the file / document it came from.
    """

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None):
        self.message = message
        self.field = field
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.source:
            parts.append(self.source)
        if self.field:
            parts.append(f"field {self.field}")
        parts.append(self.message)
        return ": ".join(parts)

    def located(self, source: str) -> ValidationError:
        """The same error, with ``source`` put in front of any existing one."""
        src = f"{source}: {self.source}" if self.source else source
        return ValidationError(self.message, field=self.field, source=src)


class DatastoreError(PybgpError):
    """The datastore failed to answer (other than a conflict)."""


class DatastoreUnavailable(DatastoreError):
    """No etcd endpoint could be reached in time."""


class ConflictError(DatastoreError):
    """A compare-and-swap failed: the key changed (or exists / is absent)."""

    def __init__(self, message: str, *, key: str | None = None):
        self.key = key
        super().__init__(message)


class NotFoundError(DatastoreError):
    """The resource or key does not exist."""


class AlreadyExistsError(ConflictError):
    """Create of a key that exists."""


class CompactedError(DatastoreError):
    """A watch asked for a revision that etcd has compacted away."""

    def __init__(self, message: str, *, compact_revision: int = 0):
        self.compact_revision = compact_revision
        super().__init__(message)


class IPAMError(PybgpError):
    """IPAM could not satisfy a request (pool exhausted, bad request...)."""


class PoolExhaustedError(IPAMError):
    """No free address in any usable pool/block."""


class KernelError(PybgpError):
    """A netlink / iptables operation failed."""


class SpeakerError(PybgpError):
    """The speaker cannot run as configured (e.g. a missing helper program)."""
