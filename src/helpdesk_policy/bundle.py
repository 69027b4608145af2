"""OPA bundles of the policies: build, sign, verify, load.

A bundle is what a fleet of OPA servers downloads (``opa run --server
--bundle bundle.tar.gz``, or a bundle service). :func:`build_bundle` writes::

    /.manifest                     {"revision": <policy revision>, "roots": ["helpdesk"], "rego_version": 1}
    /.signatures.json              optional: {"signatures": [<JWT>]}
    /helpdesk/config/data.json     the config, served as data.helpdesk.config
    /helpdesk/catalogue/data.json  the reason catalogue, served as data.helpdesk.catalogue
    /helpdesk/*.rego               the policy modules (never *_test.rego)

The manifest's ``revision`` is the policy revision the embedded engines
report for the same files and config (:attr:`PolicySet.revision`), so a
decision's ``policy_revision`` names the same thing whichever engine made it.
The archive is deterministic: entries sorted by name, zero mtimes, uids and
gids, a gzip header without name or time, so the same inputs give the same
bytes (on the same zlib).

Signing follows OPA's bundle signature format: one JWT (HS256 with a shared
secret, or RS256 with an RSA private key; ``pyjwt``, the ``bundle`` extra)
whose payload lists every other file with its SHA-256 digest::

    {"files": [{"name": "helpdesk/access.rego", "hash": "…", "algorithm": "SHA-256"}, …],
     "keyid": "…", "scope": "…"}          # keyid/scope only when given

A ``.rego`` (or any unstructured) file is hashed as its raw bytes; a
structured file (``.manifest``, ``data.json``, ``data.yaml``) is hashed in
OPA's canonical form — the parsed JSON re-encoded with object keys sorted,
no whitespace, numbers exactly as written and strings escaped as Go's
``encoding/json`` does without HTML escaping — so formatting does not change
a signature (OPA ``bundle/hash.go``). The key id goes into the JWT header
(``kid``) and, as OPA still does, the deprecated ``keyid`` claim.

:func:`verify_bundle` checks the manifest, the signature (when the bundle is
signed or a key is given), that every file is signed and every signed file is
present with a matching digest, and — signed or not — that the manifest's
revision equals the revision recomputed from the bundle's own ``.rego``
files and config, so a tampered policy or config is caught without a key.
Reading an archive is bounded before :mod:`tarfile` sees it (see
:func:`read_bundle_files`): a 300 KiB hostile archive costs milliseconds and
a few MiB, never its decompressed size. Keys are read from files that must
exist (``bytes`` are the key itself), HS256 secrets are at least 32 bytes
on both sides, and an expected key id must be in the signature.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .catalogue import ReasonCatalogue
from .config import PolicyConfig
from .errors import BundleError, BundleVerificationError, InvalidConfigError
from .policyset import PolicySet

__all__ = [
    "BundleError",
    "BundleVerificationError",
    "BundleInfo",
    "LoadedBundle",
    "build_bundle",
    "verify_bundle",
    "load_bundle",
    "read_bundle_files",
    "file_hash",
    "canonical_json",
    "read_key",
    "is_pem",
    "SIGNING_ALGORITHMS",
    "MANIFEST",
    "SIGNATURES",
    "CONFIG_DATA_PATH",
    "CATALOGUE_DATA_PATH",
    "ROOTS",
]

MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
#: Where the config lives in the bundle: its directory is its data path.
CONFIG_DATA_PATH = "helpdesk/config/data.json"
#: Where the reason catalogue lives in the bundle.
CATALOGUE_DATA_PATH = "helpdesk/catalogue/data.json"
ROOTS: tuple[str, ...] = ("helpdesk",)

Algorithm = Literal["HS256", "RS256"]
SIGNING_ALGORITHMS: tuple[str, ...] = ("HS256", "RS256")
#: OPA's hashing algorithms; MD5 and SHA-1 are refused when verifying.
_HASHES = {
    "MD5": "md5", "SHA-1": "sha1", "SHA-224": "sha224", "SHA-256": "sha256", "SHA-384": "sha384",
    "SHA-512": "sha512", "SHA-512-224": "sha512_224", "SHA-512-256": "sha512_256",
}
_WEAK_HASHES = frozenset({"MD5", "SHA-1"})
_STRUCTURED = frozenset({"data.json", "data.yaml", "signatures.json", ".manifest"})
#: What the bundle's files may hold in all (and so any one of them).
_MAX_FILE_BYTES = 64 * 1024 * 1024
#: Every tar entry counts: files, directories, PAX and GNU long-name headers.
_MAX_ENTRIES = 10_000
#: A PAX or GNU long-name header's data (tarfile reads it whole).
_MAX_EXTENDED_HEADER = 64 * 1024
#: Extended headers before one member (tarfile recurses once per header).
_MAX_CHAINED_HEADERS = 4
#: The decompressed tar stream: the files plus a header per entry and padding.
_MAX_TAR_BYTES = _MAX_FILE_BYTES + 2 * tarfile.BLOCKSIZE * _MAX_ENTRIES
#: Above _RATIO_FLOOR decompressed bytes, at most this many per compressed byte:
#: Rego and JSON compress 5-20 times, a run of zeros 1000 times.
_MAX_RATIO = 200
_RATIO_FLOOR = 1024 * 1024
_CHUNK = 256 * 1024
_MIN_HMAC_KEY = 32  # RFC 7518 §3.2: at least the hash size


@dataclass(frozen=True)
class BundleInfo:
    """What :func:`build_bundle` wrote or :func:`verify_bundle` checked."""

    path: Path
    revision: str
    roots: tuple[str, ...]
    #: Every file in the bundle (names without a leading slash), signatures excluded.
    files: tuple[str, ...]
    signed: bool
    #: ``HS256``/``RS256`` when signed.
    algorithm: str | None = None
    key_id: str | None = None
    scope: str | None = None
    #: SHA-256 of the archive bytes.
    sha256: str = ""
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "revision": self.revision, "roots": list(self.roots),
            "files": list(self.files), "signed": self.signed, "algorithm": self.algorithm,
            "key_id": self.key_id, "scope": self.scope, "sha256": self.sha256, "size": self.size,
        }


@dataclass(frozen=True)
class LoadedBundle:
    """A verified bundle's contents, ready to evaluate.

    ``policy_set`` is a :class:`PolicySet` whose modules and config come from
    the bundle (its ``revision`` equals the manifest's); ``data`` is the whole
    base document the bundle's data files make.
    """

    info: BundleInfo
    manifest: dict[str, Any]
    modules: dict[str, str]
    data: dict[str, Any]
    config: PolicyConfig
    policy_set: PolicySet = field(repr=False)

    @property
    def revision(self) -> str:
        return self.info.revision


# ----------------------------------------------------------------------- hashing


class _Number(str):
    """A JSON number kept as the literal text it was written with (Go's json.Number)."""


def _parse_json(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(
            data, parse_int=_Number, parse_float=_Number,
            parse_constant=lambda c: _raise(BundleError(f"{what}: {c} is not valid JSON")),
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{what}: not valid JSON ({exc})") from None


def _raise(exc: BaseException) -> Any:
    raise exc


def _go_string(s: str) -> str:
    # Go's encoding/json with SetEscapeHTML(false): like Python's ensure_ascii=False
    # except that U+2028 and U+2029 are escaped too.
    return json.dumps(s, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def canonical_json(value: Any) -> str:
    """OPA's canonical encoding of a parsed JSON value, the input to a structured file's hash."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_string(k)}:{canonical_json(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, _Number):
        return str.__str__(value)
    if isinstance(value, str):
        return _go_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return json.dumps(value)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _is_structured(name: str) -> bool:
    return PurePosixPath(name).name in _STRUCTURED


def file_hash(name: str, content: bytes, algorithm: str = "SHA-256") -> str:
    """The hex digest OPA signs for bundle file ``name`` (see the module doc)."""
    try:
        h = hashlib.new(_HASHES[algorithm])
    except KeyError:
        raise BundleError(f"unsupported hashing algorithm: {algorithm}") from None
    if _is_structured(name):
        if PurePosixPath(name).name == "data.yaml":
            raise BundleError(f"{name}: YAML data files are not supported; use data.json")
        h.update(canonical_json(_parse_json(content, name)).encode("utf-8"))
    else:
        h.update(content)
    return h.hexdigest()


# ----------------------------------------------------------------------- building


def _package(source: str) -> str | None:
    for line in source.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        m = re.match(r"^package\s+([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\s*$", stripped)
        return m.group(1) if m else None
    return None


def _within(path: str, roots: tuple[str, ...]) -> bool:
    segments = [s for s in path.split("/") if s]
    for root in roots:
        r = [s for s in root.split("/") if s]
        if not r or segments[: len(r)] == r:
            return True
    return False


def _bundle_files(policy_set: PolicySet) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name, source in sorted(policy_set.modules.items()):
        package = _package(source)
        if package is None:
            raise BundleError(f"{name}: no package declaration found")
        if not _within(package.replace(".", "/"), ROOTS):
            raise BundleError(f"{name}: package {package} is outside the bundle roots {list(ROOTS)}")
        files[name] = source.encode("utf-8")
    for path, doc in ((CONFIG_DATA_PATH, policy_set.config.to_data()), (CATALOGUE_DATA_PATH, policy_set.catalogue.to_data())):
        if path in files:
            raise BundleError(f"{path} clashes with a policy file")
        files[path] = (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    manifest = {"revision": policy_set.revision, "roots": list(ROOTS), "rego_version": 1}
    files[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    return files


def _archive(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar.gz of ``files`` (names get OPA's leading slash)."""
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(files):
                data = files[name]
                info = tarfile.TarInfo("/" + name)
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.type = tarfile.REGTYPE
                tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def build_bundle(
    policy_set: PolicySet,
    output_path: str | os.PathLike[str],
    *,
    signing_key: str | bytes | os.PathLike[str] | None = None,
    alg: Algorithm | str = "HS256",
    key_id: str | None = None,
    scope: str | None = None,
) -> BundleInfo:
    """Write ``policy_set`` as an OPA bundle (tar.gz) at ``output_path``.

    Args:
        policy_set: the policies and config to ship.
        output_path: the archive to write (replaced atomically).
        signing_key: sign the bundle with this key: ``bytes`` are the key
            itself, a ``str`` or path names the file holding it (which must
            exist). The HMAC secret (at least 32 bytes) for HS256, or an RSA
            private key in PEM for RS256.
        alg: ``"HS256"`` or ``"RS256"``.
        key_id: the key id OPA selects the verification key by (``kid``).
        scope: an optional ``scope`` claim (OPA then requires the same scope).

    Raises:
        BundleError: a module outside the roots, a bad or missing key file,
            a short HS256 secret, or the ``bundle`` extra (pyjwt) missing when
            signing.
    """
    out = Path(output_path)
    files = _bundle_files(policy_set)
    if signing_key is not None:
        token = _sign(files, read_key(signing_key, "signing key"), alg, key_id, scope)
        files[SIGNATURES] = (json.dumps({"signatures": [token]}, indent=1) + "\n").encode("utf-8")
    elif key_id or scope:
        raise BundleError("key_id/scope given without a signing key")
    data = _archive(files)
    _write_atomically(out, data)
    return BundleInfo(
        path=out, revision=policy_set.revision, roots=ROOTS,
        files=tuple(sorted(n for n in files if n != SIGNATURES)),
        signed=signing_key is not None, algorithm=alg if signing_key is not None else None,
        key_id=key_id, scope=scope, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
    )


# ----------------------------------------------------------------------- signing


def _jwt() -> Any:
    try:
        import jwt
    except ImportError as exc:
        raise BundleError(
            f"signing and verifying bundles needs pyjwt ({exc}); install the extra: pip install 'helpdesk-policy[bundle]'"
        ) from exc
    return jwt


def read_key(key: str | bytes | os.PathLike[str], what: str = "key") -> bytes:
    """The key itself (``bytes``), or read from the file a ``str`` or path names.

    A file must exist: a name that is not a file is an error, never the key
    itself (a mistyped path read as an HMAC secret would be a secret anyone
    who reads the command line knows). A secret read from a file loses one
    trailing newline (``echo``'d files); a PEM key is read as it is.
    """
    if isinstance(key, bytes):
        return key
    p = Path(key)
    # A str may be a secret passed by mistake: it is never echoed.
    shown = f" {p}" if not isinstance(key, str) else ""
    if not p.is_file():
        raise BundleError(
            f"the {what} file{shown} does not exist or is not a file "
            "(a str or path names the file holding the key; pass the key itself as bytes)"
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read the {what} file{shown}: {exc.strerror}") from None
    if not is_pem(data):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
    return data


def is_pem(key: bytes) -> bool:
    """True for a PEM key (RS256 by default); anything else is an HMAC secret (HS256)."""
    return key.lstrip().startswith(b"-----BEGIN")


def _check_alg(alg: str) -> str:
    if alg not in SIGNING_ALGORITHMS:
        raise BundleError(f"unsupported signing algorithm {alg!r}; use one of {list(SIGNING_ALGORITHMS)}")
    return alg


def _sign(files: Mapping[str, bytes], key: bytes, alg: str, key_id: str | None, scope: str | None) -> str:
    jwt = _jwt()
    _check_alg(alg)
    if alg == "HS256":
        if is_pem(key):
            raise BundleError("HS256 takes a shared secret, not a PEM key (use RS256 for an RSA key)")
        _check_hmac_length(key, BundleError)
        signing: Any = key
    else:
        signing = _load_private_key(key)
    payload: dict[str, Any] = {
        "files": [{"name": n, "hash": file_hash(n, files[n]), "algorithm": "SHA-256"} for n in sorted(files)]
    }
    if key_id:
        payload["keyid"] = key_id  # deprecated claim OPA still writes and reads
    if scope:
        payload["scope"] = scope
    # RS256 keys were loaded through _crypto() above, so a missing
    # cryptography has already been reported with the extra to install.
    try:
        return str(jwt.encode(payload, signing, algorithm=alg, headers={"kid": key_id} if key_id else None))
    except (ValueError, TypeError) as exc:
        raise BundleError(f"cannot sign with this key: {exc}") from None


def _check_hmac_length(key: bytes, error: type[BundleError]) -> None:
    # RFC 7518 §3.2: an HS256 key at least as long as the hash output. A short
    # secret can be brute-forced from one signed bundle, then forge any other.
    if len(key) < _MIN_HMAC_KEY:
        raise error(f"the HS256 secret must be at least {_MIN_HMAC_KEY} bytes (got {len(key)})")


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:
        raise BundleError(f"RS256 needs cryptography ({exc}): pip install 'helpdesk-policy[bundle]'") from exc
    return serialization


def _load_private_key(key: bytes) -> Any:
    serialization = _crypto()
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"RS256 needs an unencrypted RSA private key in PEM: {exc}") from None
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not isinstance(private, rsa.RSAPrivateKey):
        raise BundleError("RS256 needs an RSA private key")
    return private


def _verification_key(key: bytes, alg: str) -> Any:
    if alg == "HS256":
        if is_pem(key):
            raise BundleVerificationError("HS256 verification takes the shared secret, not a PEM key")
        _check_hmac_length(key, BundleVerificationError)
        return key
    serialization = _crypto()
    from cryptography import x509

    text = key.lstrip()
    try:
        if text.startswith(b"-----BEGIN CERTIFICATE"):
            return x509.load_pem_x509_certificate(text).public_key()
        if b"PRIVATE KEY" in text.split(b"\n", 1)[0]:
            return serialization.load_pem_private_key(text, password=None).public_key()
        return serialization.load_pem_public_key(text)
    except (ValueError, TypeError) as exc:
        raise BundleVerificationError(f"cannot read the RS256 verification key: {exc}") from None


# ------------------------------------------------------------------------ reading


def read_bundle_files(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every regular file of a bundle archive, by name without the leading slash.

    Refuses links, device files, absolute or ``..`` paths after normalising,
    duplicates, and archives beyond the bounds that keep a hostile archive
    cheap to refuse: the decompressed tar stream (and its compression ratio),
    the number of tar entries (directories, PAX and GNU long-name headers
    included), and the size of every PAX/long-name header. The bounds are
    checked on the raw 512-byte headers *as the stream is decompressed*,
    before :mod:`tarfile` reads anything: tarfile reads a PAX header whole
    into memory, so it must never see an oversized one.

    Raises:
        BundleError: the archive is unreadable, unsafe or beyond a bound.
    """
    p = Path(path)
    stream = _tar_stream(p)
    files: dict[str, bytes] = {}
    total = 0
    entries = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
            for member in tar:
                # A second guard behind the header scan: whatever tarfile
                # makes of the stream, it never yields more than the bound.
                entries += 1
                if entries > _MAX_ENTRIES:
                    raise BundleError(f"{p}: more than {_MAX_ENTRIES} tar entries")
                if member.isdir():
                    continue
                if member.type not in _REGULAR:
                    raise BundleError(f"{p}: {member.name!r} is not a regular file")
                name = _normalise(member.name)
                if name in files:
                    raise BundleError(f"{p}: {name!r} appears twice")
                total += member.size
                if member.size > _MAX_FILE_BYTES or total > _MAX_FILE_BYTES:
                    raise BundleError(f"{p}: its files hold more than {_MAX_FILE_BYTES} bytes")
                fh = tar.extractfile(member)
                files[name] = fh.read() if fh is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"cannot read bundle {p}: {exc}") from None
    return files


#: Regular-file type flags. GNU sparse and contiguous files, which tarfile
#: also counts as regular, are refused: OPA bundles have neither.
_REGULAR = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE})
#: Headers whose data tarfile reads whole and applies to the next member.
_EXTENDED = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME})
#: PAX keys that would make tarfile read the next member's data with another
#: size (or as a sparse file) than its header says, so that the scan and
#: tarfile would disagree on where the next header starts.
_PAX_LAYOUT_KEY = re.compile(rb"(?:^|\n)\d+ (size|GNU\.sparse\.[^=]*)=")


def _tar_stream(p: Path) -> bytearray:
    """The decompressed tar stream of ``p``, up to its end-of-archive marker.

    Decompresses at most ``_CHUNK`` bytes at a time, refusing as soon as the
    stream outgrows ``_MAX_TAR_BYTES`` or ``_MAX_RATIO`` times the compressed
    bytes it came from, and scans each header as it arrives
    (:class:`_HeaderScan`). Nothing after the end-of-archive marker is
    decompressed.
    """
    scan = _HeaderScan(p)
    buf = bytearray()
    consumed = 0  # compressed bytes the decompressor has used
    try:
        with p.open("rb") as raw:
            pending = raw.read(_CHUNK)
            if pending[:2] != b"\x1f\x8b":
                raise BundleError(f"cannot read bundle {p}: not a gzip file")
            inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            while not scan.done:
                if not pending:
                    pending = raw.read(_CHUNK)
                    if not pending:
                        if not inflate.eof:
                            raise BundleError(f"cannot read bundle {p}: the gzip stream is truncated")
                        break
                if inflate.eof:
                    if not pending.strip(b"\0"):
                        pending = b""  # NUL padding after a gzip member, as gzip allows
                        continue
                    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # the next gzip member
                out = inflate.decompress(pending, _CHUNK)
                rest = inflate.unconsumed_tail or inflate.unused_data
                consumed += len(pending) - len(rest)
                pending = rest
                buf += out
                if len(buf) > _MAX_TAR_BYTES:
                    raise BundleError(f"{p}: decompresses to more than {_MAX_TAR_BYTES} bytes")
                if len(buf) > _RATIO_FLOOR and len(buf) > _MAX_RATIO * consumed:
                    raise BundleError(f"{p}: compression ratio above {_MAX_RATIO}:1 (a decompression bomb?)")
                scan.feed(buf)
    except OSError as exc:
        raise BundleError(f"cannot read bundle {p}: {exc.strerror or exc}") from None
    except zlib.error as exc:
        raise BundleError(f"cannot read bundle {p}: not a valid gzip stream ({exc})") from None
    if scan.done:
        del buf[scan.end :]
    return buf


class _HeaderScan:
    """Walks a tar stream's 512-byte headers the way tarfile will, checking the bounds.

    Counts every header (files, directories, PAX and GNU long-name headers),
    caps the size of the headers tarfile reads whole and how many of them
    may precede one member, and refuses any entry that is neither a regular
    file nor a directory. Stops at the end-of-archive marker, or at an
    invalid header after the first (where tarfile stops too).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.entries = 0
        self.chained = 0
        self.done = False
        #: Where the archive ends (the start of the end-of-archive marker).
        self.end = 0

    def feed(self, buf: bytearray) -> None:
        while not self.done and self.offset + tarfile.BLOCKSIZE <= len(buf):
            header = bytes(buf[self.offset : self.offset + tarfile.BLOCKSIZE])
            parsed = self._parse(header)
            if parsed is None:
                self.done, self.end = True, self.offset
                return
            kind, size, name = parsed
            data = self.offset + tarfile.BLOCKSIZE
            if kind in _EXTENDED:
                if size > _MAX_EXTENDED_HEADER:
                    raise BundleError(
                        f"{self.path}: a PAX or long-name header of {size} bytes (at most {_MAX_EXTENDED_HEADER})"
                    )
                if data + size > len(buf):
                    return  # read its records once they have all arrived (nothing counted yet)
            self.entries += 1
            if self.entries > _MAX_ENTRIES:
                raise BundleError(f"{self.path}: more than {_MAX_ENTRIES} tar entries")
            if kind in _EXTENDED:
                self.chained += 1
                if self.chained > _MAX_CHAINED_HEADERS:
                    raise BundleError(f"{self.path}: more than {_MAX_CHAINED_HEADERS} extended headers in a row")
                if kind != tarfile.GNUTYPE_LONGNAME and _PAX_LAYOUT_KEY.search(bytes(buf[data : data + size])):
                    raise BundleError(f"{self.path}: a PAX header sets a member's size or sparse layout")
                self.offset = data + _blocks(size)
                continue
            self.chained = 0
            if kind == tarfile.DIRTYPE or (kind == tarfile.AREGTYPE and name.endswith(b"/")):
                self.offset = data  # tarfile never skips data after a directory header
            elif kind in _REGULAR:
                if size > _MAX_FILE_BYTES:
                    raise BundleError(f"{self.path}: a member of {size} bytes (at most {_MAX_FILE_BYTES})")
                self.offset = data + _blocks(size)
            else:
                shown = name.decode("utf-8", "replace")
                raise BundleError(f"{self.path}: {shown!r} is not a regular file or directory (type {kind!r})")

    def _parse(self, header: bytes) -> tuple[bytes, int, bytes] | None:
        """(type, size, name) of a header; None where tarfile sees the end of the archive."""
        if header.count(0) == tarfile.BLOCKSIZE:
            return None
        try:
            valid = tarfile.nti(header[148:156]) in tarfile.calc_chksums(header)
            size = tarfile.nti(header[124:136])
        except (ValueError, tarfile.HeaderError):
            valid, size = False, 0
        if not valid or size < 0:
            if self.offset == 0:
                raise BundleError(f"cannot read bundle {self.path}: not a tar archive inside the gzip stream")
            return None
        return header[156:157], size, header[0:100].split(b"\0", 1)[0]


def _blocks(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _normalise(name: str) -> str:
    parts = [s for s in name.replace("\\", "/").split("/") if s not in ("", ".")]
    if not parts or ".." in parts:
        raise BundleError(f"unsafe path in bundle: {name!r}")
    return "/".join(parts)


def _manifest(files: Mapping[str, bytes]) -> dict[str, Any]:
    if MANIFEST not in files:
        raise BundleVerificationError("no .manifest in the bundle")
    manifest = _plain(_parse_json(files[MANIFEST], MANIFEST))
    if not isinstance(manifest, dict):
        raise BundleVerificationError(".manifest is not a JSON object")
    if not isinstance(manifest.get("revision"), str) or not manifest["revision"]:
        raise BundleVerificationError(".manifest has no revision")
    roots = manifest.get("roots", [""])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise BundleVerificationError(".manifest roots must be a list of strings")
    if manifest.get("rego_version", 1) not in (0, 1):
        raise BundleVerificationError(f".manifest rego_version {manifest.get('rego_version')!r} is unknown")
    return manifest


def _plain(value: Any) -> Any:
    """Parsed JSON with number literals turned back into Python numbers."""
    if isinstance(value, _Number):
        text = str.__str__(value)
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _data_tree(files: Mapping[str, bytes], roots: tuple[str, ...]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name in sorted(files):
        base = PurePosixPath(name).name
        if base in ("data.yaml", "data.yml"):
            raise BundleVerificationError(f"{name}: YAML data files are not supported; use data.json")
        if base != "data.json":
            continue
        value = _plain(_parse_json(files[name], name))
        directory = [s for s in str(PurePosixPath(name).parent).split("/") if s not in ("", ".")]
        if not directory and not isinstance(value, dict):
            raise BundleVerificationError(f"{name}: root data must be an object")
        if directory and not _within("/".join(directory), roots):
            raise BundleVerificationError(f"{name}: data path /{'/'.join(directory)} is outside the roots {list(roots)}")
        _insert(tree, directory, value, name)
    return tree


def _insert(tree: dict[str, Any], path: list[str], value: Any, name: str) -> None:
    node = tree
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise BundleVerificationError(f"{name}: conflicts with other data at {key}")
        node = child
    if not path:
        _merge(tree, value, name)
        return
    last = path[-1]
    if last in node:
        if not (isinstance(node[last], dict) and isinstance(value, dict)):
            raise BundleVerificationError(f"{name}: conflicts with other data")
        _merge(node[last], value, name)
    else:
        node[last] = value


def _merge(into: dict[str, Any], value: dict[str, Any], name: str) -> None:
    for k, v in value.items():
        if k in into and isinstance(into[k], dict) and isinstance(v, dict):
            _merge(into[k], v, name)
        elif k in into:
            raise BundleVerificationError(f"{name}: conflicts with other data at {k}")
        else:
            into[k] = v


def _policy_set_from_sources(
    source: Path, modules: dict[str, str], config: PolicyConfig, catalogue: ReasonCatalogue
) -> PolicySet:
    # A PolicySet whose modules come from memory: ``modules`` and
    # ``test_modules`` are cached properties, so seeding the instance dict
    # makes ``revision``, the engines and the oracle read these sources.
    ps = PolicySet(directory=source, config=config, catalogue=catalogue)
    ps.__dict__["modules"] = dict(sorted(modules.items()))
    ps.__dict__["test_modules"] = {}
    return ps


def _check_signature(
    files: dict[str, bytes], key: bytes | None, alg: str | None, key_id: str | None, scope: str | None,
) -> tuple[str, str | None, str | None]:
    """Verify ``.signatures.json`` against ``files``; returns (alg, key id, scope)."""
    jwt = _jwt()
    doc = _plain(_parse_json(files[SIGNATURES], SIGNATURES))
    if not isinstance(doc, dict):
        raise BundleVerificationError(".signatures.json is not a JSON object")
    if doc.get("plugin"):
        raise BundleVerificationError(f".signatures.json names a signing plugin ({doc['plugin']!r}); not supported")
    tokens = doc.get("signatures")
    if not isinstance(tokens, list) or not tokens:
        raise BundleVerificationError(".signatures.json: missing JWT (expected exactly one)")
    if len(tokens) > 1:
        raise BundleVerificationError(".signatures.json: multiple JWTs not supported (expected exactly one)")
    token = tokens[0]
    if not isinstance(token, str):
        raise BundleVerificationError(".signatures.json: the signature is not a string")
    if key is None:
        raise BundleVerificationError("the bundle is signed: give the verification key")
    algorithm = _check_alg(alg or ("RS256" if is_pem(key) else "HS256"))
    try:
        header = jwt.get_unverified_header(token)
        payload = jwt.decode(
            token, _verification_key(key, algorithm), algorithms=[algorithm],
            options={"verify_aud": False, "verify_iss": False, "require": []},
        )
    except jwt.PyJWTError as exc:
        raise BundleVerificationError(f"bad bundle signature: {exc}") from None
    token_kid = header.get("kid") or payload.get("keyid")
    if key_id and token_kid != key_id:
        # A token without a key id does not say it was made with the expected key.
        if not token_kid:
            raise BundleVerificationError(f"the bundle's signature carries no key id, expected {key_id!r}")
        raise BundleVerificationError(f"the bundle was signed with key id {token_kid!r}, not {key_id!r}")
    token_scope = payload.get("scope") or ""
    if token_scope != (scope or ""):
        raise BundleVerificationError(f"scope mismatch (signed {token_scope!r}, expected {scope or ''!r})")
    signed = payload.get("files")
    if not isinstance(signed, list) or not all(isinstance(f, dict) for f in signed):
        raise BundleVerificationError("the signature payload has no files list")
    by_name: dict[str, dict[str, Any]] = {}
    for entry in signed:
        name = entry.get("name")
        if not isinstance(name, str):
            raise BundleVerificationError("a signed file has no name")
        by_name[name.lstrip("/")] = entry
    for name in sorted(n for n in files if n != SIGNATURES):
        entry = by_name.pop(name, None)
        if entry is None:
            raise BundleVerificationError(f"file {name} not included in bundle signature")
        algo = entry.get("algorithm")
        if not isinstance(algo, str) or not algo:
            raise BundleVerificationError(f"no hashing algorithm provided for file {name}")
        if algo.upper() in _WEAK_HASHES:
            raise BundleVerificationError(f"file {name} is signed with the weak hash {algo}")
        want = entry.get("hash")
        got = file_hash(name, files[name], algo.upper())
        if not isinstance(want, str) or want.lower() != got:
            raise BundleVerificationError(f"{name}: digest mismatch (want: {want}, got: {got})")
    if by_name:
        raise BundleVerificationError(
            f"file(s) {sorted(by_name)} specified in bundle signatures but not found in the target bundle"
        )
    return algorithm, token_kid, token_scope or None


def _inspect(
    path: str | os.PathLike[str], key: str | bytes | os.PathLike[str] | None, alg: str | None,
    key_id: str | None, scope: str | None,
) -> LoadedBundle:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {p}: {exc.strerror}") from None
    files = read_bundle_files(p)
    manifest = _manifest(files)
    key_bytes = read_key(key, "verification key") if key is not None else None
    signed = SIGNATURES in files
    algorithm = kid = signed_scope = None
    if signed:
        algorithm, kid, signed_scope = _check_signature(files, key_bytes, alg, key_id, scope)
    elif key_bytes is not None:
        raise BundleVerificationError("the bundle is not signed (no .signatures.json), but a verification key was given")
    roots = tuple(r.strip("/") for r in manifest.get("roots", [""]))
    modules: dict[str, str] = {}
    for name, content in files.items():
        if not name.endswith(".rego"):
            continue
        try:
            source = content.decode("utf-8")
        except UnicodeDecodeError:
            raise BundleVerificationError(f"{name}: not UTF-8") from None
        package = _package(source)
        if package is None or not _within(package.replace(".", "/"), roots):
            raise BundleVerificationError(f"manifest roots {list(roots)} do not permit package {package} in {name}")
        if not name.endswith("_test.rego"):
            modules[name] = source
    data = _data_tree(files, roots)
    config_doc = data.get("helpdesk", {}).get("config") if isinstance(data.get("helpdesk"), dict) else None
    if not isinstance(config_doc, dict):
        raise BundleVerificationError(f"no config at data.helpdesk.config (expected {CONFIG_DATA_PATH})")
    try:
        config = PolicyConfig.from_mapping(config_doc)
    except InvalidConfigError as exc:
        raise BundleVerificationError(f"the bundle's config is invalid: {exc}") from None
    catalogue_doc = data["helpdesk"].get("catalogue")
    if not isinstance(catalogue_doc, dict):
        raise BundleVerificationError(f"no reason catalogue at data.helpdesk.catalogue (expected {CATALOGUE_DATA_PATH})")
    try:
        # Exactly what the bundle holds: no merging over the stock catalogue.
        catalogue = ReasonCatalogue.model_validate(catalogue_doc)
    except ValueError as exc:
        raise BundleVerificationError(f"the bundle's reason catalogue is invalid: {exc}") from None
    if not modules:
        raise BundleVerificationError("the bundle has no policy modules")
    policy_set = _policy_set_from_sources(p, modules, config, catalogue)
    if policy_set.revision != manifest["revision"]:
        raise BundleVerificationError(
            f"revision mismatch: the manifest says {manifest['revision']}, the bundle's policies, config and catalogue "
            f"make {policy_set.revision} (modified after it was built?)"
        )
    info = BundleInfo(
        path=p, revision=manifest["revision"], roots=roots, files=tuple(sorted(n for n in files if n != SIGNATURES)),
        signed=signed, algorithm=algorithm, key_id=kid, scope=signed_scope,
        sha256=hashlib.sha256(raw).hexdigest(), size=len(raw),
    )
    return LoadedBundle(info=info, manifest=manifest, modules=modules, data=data, config=config, policy_set=policy_set)


def verify_bundle(
    path: str | os.PathLike[str],
    *,
    key: str | bytes | os.PathLike[str] | None = None,
    alg: Algorithm | str | None = None,
    key_id: str | None = None,
    scope: str | None = None,
) -> BundleInfo:
    """Verify a bundle; return what it holds.

    Args:
        path: the bundle archive.
        key: the HS256 secret (at least 32 bytes), or for RS256 a PEM public
            key, certificate or private key: ``bytes`` are the key itself, a
            ``str`` or path names the file holding it (which must exist).
            Required when the bundle is signed; refused when it is not.
        alg: ``"HS256"``/``"RS256"``; default: RS256 for a PEM key, else HS256
            (never taken from the token, to rule out algorithm confusion).
        key_id: when given, the token must carry this key id (a token
            without one is refused).
        scope: the scope the signature must carry (OPA semantics: none = none).

    Raises:
        BundleVerificationError: any check failed (the message says which).
        BundleError: the archive cannot be read, or pyjwt is missing.
    """
    return _inspect(path, key, alg, key_id, scope).info


def load_bundle(
    path: str | os.PathLike[str],
    *,
    key: str | bytes | os.PathLike[str] | None = None,
    alg: Algorithm | str | None = None,
    key_id: str | None = None,
    scope: str | None = None,
) -> LoadedBundle:
    """Verify a bundle (as :func:`verify_bundle`) and return its contents."""
    return _inspect(path, key, alg, key_id, scope)
