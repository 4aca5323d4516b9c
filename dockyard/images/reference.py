"""Image references, parsed the way Docker parses them (pure: text in, Reference or error out).

Grammar (docker/distribution ``reference``):
    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component ( "/" path-component )*
    domain     := host [ ":" port ]          host: dns labels joined by ".", or "[ipv6]"
    path-component := [a-z0-9]+ ( separator [a-z0-9]+ )*     separator := [_.] | "__" | "-"+
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex (>= 32 hex digits)

Normalisation (Docker's ``ParseNormalizedNamed``): the first component is a domain only if it has a
"." or ":" or is "localhost" (or has uppercase letters, which a path may not); otherwise the domain is
``docker.io`` and single-component names get ``library/``. ``familiar`` turns that back for display.
"""

import re
from dataclasses import dataclass

from dockyard.errdefs import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
NAME_TOTAL_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_ANCHORED_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_ANCHORED_TAG_RE = re.compile(rf"^{_TAG}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    domain: str  # "docker.io", "localhost:5000"
    path: str  # "library/busybox"
    tag: str | None = None
    digest: str | None = None  # "sha256:<hex>"

    @property
    def name(self) -> str:
        """Fully qualified repository: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Repository as Docker displays it: ``busybox``, ``user/app``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_PREFIX) and self.path.count("/") == 1:
            return self.path[len(OFFICIAL_PREFIX):]
        return self.path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """``busybox:latest``, ``localhost:5000/x:1``, ``busybox@sha256:...``."""
        return self.familiar_name + self._suffix()

    def with_default_tag(self) -> "Reference":
        """Docker's TagNameOnly: a bare name means ``:latest``; a digest keeps no tag."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, "latest")
        return self


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i < 0 or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse(s: str) -> Reference:
    """Parse and normalise a reference (``ParseNormalizedNamed``); no default tag is added."""
    if not isinstance(s, str) or not s:
        raise InvalidArgument("invalid reference format: repository name must have at least one component")
    if _ANCHORED_ID_RE.match(s):
        raise InvalidArgument(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(s)
    # The repository part (before any tag/digest) must be lowercase; domains may have capitals.
    repo_part = remainder.split("@", 1)[0]
    colon = repo_part.rfind(":")
    if colon >= 0:
        repo_part = repo_part[:colon]
    if repo_part.lower() != repo_part:
        raise InvalidArgument(f"invalid reference format: repository name ({repo_part}) must be lowercase")
    m = _REFERENCE_RE.match(f"{domain}/{remainder}")
    if not m:
        raise InvalidArgument("invalid reference format")
    name, tag, digest = m.groups()
    if len(name) > NAME_TOTAL_MAX:
        raise InvalidArgument(f"invalid reference format: repository name must not be more than {NAME_TOTAL_MAX} characters")
    if digest is not None:
        algo, _, hexpart = digest.partition(":")
        if algo == "sha256" and len(hexpart) != 64:
            raise InvalidArgument("invalid reference format: invalid checksum digest length")
    return Reference(domain, name[len(domain) + 1:], tag, digest)


def parse_docker_ref(s: str) -> Reference:
    """``ParseDockerRef``: normalised, ``:latest`` when neither tag nor digest is given."""
    return parse(s).with_default_tag()


def parse_repo_tag(repo: str, tag: str | None) -> Reference:
    """Join a repository and a separate tag the way ``POST /images/{name}/tag?repo=&tag=`` gives them."""
    if tag and not _ANCHORED_TAG_RE.match(tag):
        raise InvalidArgument(f"invalid tag format: {tag!r}")
    ref = parse(repo)
    if tag:
        if ref.tag or ref.digest:
            raise InvalidArgument(f"invalid reference format: {repo!r} already has a tag or digest")
        ref = Reference(ref.domain, ref.path, tag)
    return ref.with_default_tag()


def familiar(s: str) -> str:
    """Display form of a fully qualified reference string."""
    return parse(s).familiar()


def is_digest(s: str) -> bool:
    return bool(_SHA256_RE.match(s))
