"""Bind specs become listening sockets: HOST:PORT, [IPv6]:PORT, unix:PATH, fd://N, each
speaking HTTP, or uwsgi with a `uwsgi:` prefix."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import grp
import os
import socket
import stat

from .errors import StartupError


@dataclasses.dataclass(frozen=True)
class Listener:
    """A listening socket and how to show its address to people."""

    sock: socket.socket
    url: str  # "http://127.0.0.1:8000", "http://[::1]:8000" or "unix:/run/app.sock"
    owned: bool = True  # we created it (a unix socket file we may remove); not inherited
    protocol: str = "http"  # or "uwsgi"

    @property
    def port(self) -> int | None:
        address = self.sock.getsockname()
        return int(address[1]) if isinstance(address, tuple) else None


def split_protocol(spec: str, default: str = "http") -> tuple[str, str]:
    """The protocol a bind names and the rest: `uwsgi://127.0.0.1:3031` and
    `uwsgi:unix:/run/app.sock` speak uwsgi; a bind without a prefix speaks `default`."""
    for prefix in ("uwsgi://", "uwsgi:"):
        if spec.startswith(prefix):
            return "uwsgi", spec[len(prefix) :]
    return default, spec


def parse_bind(spec: str) -> tuple[str, str | int]:
    """("tcp", "host:port") style split: ("unix", path), ("fd", n) or (host, port)."""
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise StartupError(f"bind {spec!r}: unix: needs a path")
        return "unix", path
    if spec.startswith("fd://"):
        try:
            return "fd", int(spec[5:])
        except ValueError:
            raise StartupError(f"bind {spec!r}: fd:// needs a file descriptor number") from None
    if spec.startswith("tcp://"):  # gunicorn's spelling of a TCP bind
        spec = spec[6:]
    scheme, sep, rest = spec.partition("://")
    if sep:
        where = rest.split("/", 1)[0] or "127.0.0.1:8000"
        raise StartupError(
            f"bind {scheme}://{rest!r}: a bind is HOST:PORT, not a URL. Use -b {where}"
            + (" and --certfile/--keyfile for HTTPS." if scheme == "https" else ".")
        )
    if spec.isdigit():  # a bare port, as gunicorn reads it; loopback like the default bind
        spec = f"127.0.0.1:{spec}"
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise StartupError(f"bind {spec!r}: expected [IPv6]:PORT")
        port_text = rest[1:] or "8000"
    elif spec.count(":") > 1:
        raise StartupError(f"bind {spec!r}: put an IPv6 address in brackets, like [::1]:8000")
    else:
        host, _, port_text = spec.partition(":")
        port_text = port_text or "8000"
    try:
        port = int(port_text)
    except ValueError:
        raise StartupError(f"bind {spec!r}: {port_text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise StartupError(f"bind {spec!r}: port {port} is out of range")
    return host or "0.0.0.0", port


def open_listener(
    spec: str,
    backlog: int,
    scheme: str = "http",
    reuse_port: bool = False,
    protocol: str = "http",
    socket_mode: int | None = None,
    socket_group: str | None = None,
) -> Listener:
    """Bind and listen; raise `StartupError` with a readable message on failure.

    `protocol` is what a bind without a `uwsgi:` prefix speaks. `socket_mode`
    (permission bits) and `socket_group` (name or gid) apply to a unix: socket only;
    a group without a mode means 0o660, so the group may connect.
    """
    protocol, spec = split_protocol(spec, protocol)
    listener = _open(spec, backlog, scheme, reuse_port, socket_mode, socket_group)
    if protocol == "http":
        return listener
    where = listener.url.partition("://")[2] or listener.url  # host:port, or unix:PATH
    url = f"{protocol}:{where}" if where.startswith("unix:") else f"{protocol}://{where}"
    return dataclasses.replace(listener, url=url, protocol=protocol)


def _open(
    spec: str,
    backlog: int,
    scheme: str,
    reuse_port: bool,
    socket_mode: int | None,
    socket_group: str | None,
) -> Listener:
    kind, where = parse_bind(spec)
    if kind == "unix":
        gid = None if socket_group is None else group_id(socket_group)
        if gid is not None and socket_mode is None:
            socket_mode = 0o660
        return _unix(str(where), backlog, socket_mode, gid)
    if kind == "fd":
        try:
            sock = socket.socket(fileno=int(where))
        except OSError as error:
            raise StartupError(f"bind {spec}: {error.strerror or error}") from None
        sock.setblocking(False)
        return Listener(sock, _url(sock, scheme), owned=False)
    return _tcp(kind, int(where), backlog, spec, scheme, reuse_port)


def _tcp(host: str, port: int, backlog: int, spec: str, scheme: str, reuse_port: bool) -> Listener:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise StartupError(f"cannot bind {spec}: unknown host {host!r} ({error})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise StartupError(
                f"cannot bind {spec}: the address is already in use. Another server (perhaps "
                "another wsgiserve) is listening there; stop it or choose another port with -b."
            ) from None
        raise StartupError(f"cannot bind {spec}: {error.strerror or error}") from None
    sock.setblocking(False)
    return Listener(sock, _url(sock, scheme))


def group_id(group: str) -> int:
    """The gid of a group name or number; `StartupError` naming the fix if there is none."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StartupError(
            f"--socket-group {group}: no such group. Give the group your web server runs as "
            "(www-data on Debian, nginx or apache on Red Hat), or its number."
        ) from None


def _unix(path: str, backlog: int, mode: int | None, gid: int | None) -> Listener:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.stat(directory)
    except FileNotFoundError:
        # Not created for the user: who may enter it decides who may connect, and
        # a directory under /run vanishes at boot anyway.
        raise StartupError(
            f"cannot bind unix:{path}: the directory {directory} does not exist. Create it "
            f"first (mkdir -p {directory}), or let systemd create it at each start with "
            f"RuntimeDirectory={os.path.basename(directory)} in the service unit."
        ) from None
    except OSError:
        pass  # there but out of reach: bind() says so ("Permission denied")
    with contextlib.suppress(FileNotFoundError, PermissionError):  # bind() reports the latter
        if stat.S_ISSOCK(os.stat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # a stale socket left by a server that died
            else:
                probe.close()
                raise StartupError(f"cannot bind unix:{path}: a server is already listening there")
            finally:
                probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as error:
        sock.close()
        raise StartupError(f"cannot bind unix:{path}: {error.strerror or error}") from None
    try:
        # Before listen(): until then a connect() is refused whatever the permissions,
        # so nobody gets in under the umask's mode first.
        if gid is not None:
            os.chown(path, -1, gid)
        if mode is not None:
            os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        if gid is not None and error.errno == errno.EPERM:
            raise StartupError(
                f"cannot give unix:{path} to group {gid}: only root or a member of the group "
                "may. Start wsgiserve as root (with --user to drop privileges), or add its "
                "user to the group."
            ) from None
        raise StartupError(f"cannot bind unix:{path}: {error.strerror or error}") from None
    sock.setblocking(False)
    return Listener(sock, f"unix:{path}")


def _url(sock: socket.socket, scheme: str = "http") -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    host, port = address[0], address[1]
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{host}]:{port}"
    return f"{scheme}://{host}:{port}"


def close_listener(listener: Listener, unlink: bool = True) -> None:
    """Close the socket and (if `unlink`) remove a unix socket file we created."""
    address = listener.sock.getsockname() if listener.sock.fileno() >= 0 else None
    listener.sock.close()
    if (
        unlink
        and listener.owned  # a socket systemd or a parent passed us is theirs to remove
        and "unix:" in listener.url
        and isinstance(address, str)
        and address
    ):
        with contextlib.suppress(OSError):
            os.unlink(address)


SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): passed sockets start at file descriptor 3


def systemd_listeners(scheme: str = "http") -> list[Listener]:
    """Sockets passed by systemd socket activation (LISTEN_FDS/LISTEN_PID), if any.

    The variables are removed once read, so a process we start does not claim them too.
    """
    pid = os.environ.get("LISTEN_PID", "")
    count = os.environ.get("LISTEN_FDS", "")
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    listeners = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        listeners.append(Listener(sock, _url(sock, scheme), owned=False))
    return listeners
