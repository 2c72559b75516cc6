"""Where etcd is and how to reach it — the settings alone, importing nothing
heavy, so a process can read them before it decides what to load (the
speaker loads no TLS when its etcd needs none: ``pybgp.cli.speaker``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EtcdConfig:
    """Where etcd is and how to authenticate (Calico's ``etcd_*`` settings)."""

    endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    ca_cert_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 5.0

    @property
    def needs_tls(self) -> bool:
        """Is any endpoint ``https://`` (the only scheme that uses TLS)?"""
        return any(url.lower().startswith("https://") for url in self.endpoints)
