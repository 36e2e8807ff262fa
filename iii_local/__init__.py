"""A local stand-in for the iii engine 0.8.3.

It reads the same `iii-config.yaml`, speaks the iii-sdk 0.8.3 worker protocol (so the
unmodified `motia run` worker connects to it), and provides the REST, queue, cron and
state modules, process supervision (ExecModule), an OTel bridge for logs and traces,
and an operator surface (`python -m iii_local ...`, `/_console/*`).
See ARCHITECTURE.md for its semantics and where they differ from the real engine.
"""

__version__ = "0.8.3-local"
