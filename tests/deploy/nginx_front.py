"""Debian's nginx with the shipped config (deploy/nginx/) in front of a stand-in engine, for tests.

`NginxFront` renders deploy/nginx/bitbylaw-motia.conf for a private prefix (free port on
127.0.0.1, a self-signed certificate made here with `cryptography`, logs in the prefix, the
engine's REST port as upstream) and includes deploy/nginx/bitbylaw-motia-locations.conf
unchanged. Every placeholder it replaces must occur exactly once in the shipped file, so a
change there fails the tests instead of slipping past them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iii_local.testing import free_port
from tests.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
NGINX_DIR = ROOT / "deploy" / "nginx"
SERVER_CONF = NGINX_DIR / "bitbylaw-motia.conf"
LOCATIONS_CONF = NGINX_DIR / "bitbylaw-motia-locations.conf"


def nginx_binary() -> str:
    """Debian's nginx; a missing one fails the test (make test and .ci/run install it)."""
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if binary is None:
        pytest.fail("nginx is not installed: run `make test` (it installs Debian's nginx) or apt-get install nginx")
    return binary


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (also its own CA); returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def render_server_conf(text: str, replacements: dict[str, str]) -> str:
    """The shipped server file with its placeholders replaced (each must occur exactly once)."""
    for old, new in replacements.items():
        count = text.count(old)
        assert count == 1, f"deploy/nginx/bitbylaw-motia.conf: expected {old!r} once, found it {count} times"
        text = text.replace(old, new)
    return text


class NginxFront:
    """nginx -p <prefix> -c nginx.conf -g 'daemon off;' on a free port, TLS, in front of `upstream_port`."""

    def __init__(self, upstream_port: int) -> None:
        self.binary = nginx_binary()
        self.upstream_port = upstream_port
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-test-"))
        self.prefix.chmod(0o755)  # nginx's workers (nobody, when the master is root) use temp dirs in here
        self.cert, self.key = make_certificate(self.prefix)
        self.access_log = self.prefix / "access.log"
        self.error_log = self.prefix / "error.log"
        self.stderr_log = self.prefix / "stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"https://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        site = render_server_conf(
            SERVER_CONF.read_text(),
            {
                "server 127.0.0.1:3111;": f"server 127.0.0.1:{self.upstream_port};",
                "listen 443 ssl http2;": f"listen 127.0.0.1:{self.port} ssl http2;",
                "listen [::]:443 ssl http2;": "",
                "/etc/ssl/certs/bitbylaw-motia.pem": str(self.cert),
                "/etc/ssl/private/bitbylaw-motia.key": str(self.key),
                "/var/log/nginx/bitbylaw-motia.access.log": str(self.access_log),
                "/var/log/nginx/bitbylaw-motia.error.log": str(self.error_log),
                "include /etc/nginx/snippets/bitbylaw-motia-locations.conf;": f"include {LOCATIONS_CONF};",
            },
        )
        (self.prefix / "bitbylaw-motia.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {self.prefix / 'tmp' / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            f"worker_processes 1;\npid {self.prefix / 'nginx.pid'};\nerror_log {self.prefix / 'main-error.log'} info;\n"
            f"events {{ worker_connections 256; }}\nhttp {{\n{temp}\n    include {self.prefix / 'bitbylaw-motia.conf'};\n}}\n"
        )
        (self.prefix / "tmp").mkdir(exist_ok=True)
        return conf

    def start(self, timeout: float = 10.0) -> NginxFront:
        self.write_config()
        args = [self.binary, "-p", str(self.prefix), "-c", "nginx.conf", "-e", str(self.prefix / "main-error.log")]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t refused the shipped config:\n{check.stderr}"
        self.proc = subprocess.Popen([*args, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=open(self.stderr_log, "wb"))  # noqa: SIM115
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not start:\n{self.all_logs()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, grace=10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this nginx's certificate (and checks the host)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def all_logs(self) -> str:
        """Everything nginx wrote: access log, server and main error logs, stderr."""
        out = []
        for path in sorted(self.prefix.glob("*.log")):
            out.append(f"== {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(out)

    def wait_access_lines(self, count: int, timeout: float = 5.0) -> list[str]:
        """The access log's lines, once it has at least `count` (nginx writes after the answer)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)
