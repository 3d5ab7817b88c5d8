"""Inputs given as URLs (``s3://``, ``gs://``, ``http(s)://``, anything fsspec opens).

A masks directory or a prediction store may be a URL instead of a local path. It is read
through `fsspec <https://filesystem-spec.readthedocs.io>`_ with the storage options of
``--storage-options JSON`` (``storage_options=`` in the Python API); credentials come from
the usual environment of each filesystem (``AWS_*`` variables and ``~/.aws`` for S3,
``GOOGLE_APPLICATION_CREDENTIALS`` for GCS ...), or from the storage options. What a run
records about a URL is :func:`redact`'s form of it: no user, password or query string, and
never the storage options.

Every failure of a remote filesystem becomes one :class:`InputError` line naming the URL
(:func:`remote_error`): bad JSON, a protocol whose filesystem is not installed, an
unreachable endpoint, a missing bucket or key, missing credentials.

No network wait is unbounded: the storage option ``"timeout"`` (seconds, :data:`DEFAULT_TIMEOUT`
unless given; ``--timeout`` on the command line) becomes each filesystem's own settings
(:func:`filesystem_options`), and a request that gets no answer in time is an InputError naming it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import InputError, one_line

#: ``scheme://``: two letters or more, so that a Windows drive (``C:\\``) is never a URL.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")

#: The pip extra that brings each protocol's filesystem, for the error when it is missing.
_EXTRAS = {"s3": "s3fs (pip install 'segaudit[s3]')", "s3a": "s3fs (pip install 'segaudit[s3]')",
           "gs": "gcsfs (pip install gcsfs)", "gcs": "gcsfs (pip install gcsfs)",
           "az": "adlfs (pip install adlfs)", "abfs": "adlfs (pip install adlfs)",
           "http": "aiohttp (pip install aiohttp)", "https": "aiohttp (pip install aiohttp)"}


def is_url(location: object) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a local path.

    Parameters
    ----------
    location : str, Path or None
        A masks directory or prediction store as given. A :class:`~pathlib.Path` is never a URL
        (``Path("s3://b")`` has already lost a slash).

    Returns
    -------
    bool
    """
    return isinstance(location, str) and bool(_URL.match(location))


#: What a URL turns into once it went through :class:`~pathlib.Path` (``s3:/bucket/key``).
_MANGLED_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:/")


def refuse_url_output(path: str | Path | None, what: str) -> None:
    """InputError if an output (given as a path) is a URL: outputs are local files only.

    Parameters
    ----------
    path : str, Path or None
        The output as the command received it (a typer Path has lost one slash of a URL).
    what : str
        The option, for the message (``"--output"``).
    """
    if path is not None and _MANGLED_URL.match(str(path)):
        raise InputError(f"{what} {path}: outputs are written to local files only, not to URLs; "
                         "write locally, then copy (aws s3 cp, gcloud storage cp ...)")


def redact(url: str) -> str:
    """``url`` without what may be a secret: the user and password, the query and the fragment.

    Parameters
    ----------
    url : str
        A URL as given (``s3://bucket/key``, ``https://user:token@host/path?sig=...``).

    Returns
    -------
    str
        The URL as a run record or a message shows it (``https://host/path``); anything that is
        not a URL unchanged.
    """
    if not is_url(url):
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/") or url


def location_text(location: str | Path) -> str:
    """How the run record writes an input: a URL redacted, a local path absolute."""
    return redact(location) if is_url(location) else str(Path(location).resolve())


def parse_storage_options(value: str | dict | None, where: str = "--storage-options") -> dict:
    """The storage options as a dict: None is ``{}``, a dict is checked, a string is parsed as JSON.

    Parameters
    ----------
    value : str, dict or None
        A JSON object (``'{"endpoint_url": "http://127.0.0.1:9000", "anon": true}'``) or a dict.
    where : str
        The option's name, for the error message.

    Returns
    -------
    dict

    Raises
    ------
    InputError
        For text that is not JSON or not a JSON object (the text itself is not quoted: it may
        hold a secret).
    """
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InputError(f"{where}: not valid JSON ({type(exc).__name__} at position "
                             f"{getattr(exc, 'pos', '?')}); give an object such as "
                             "'{\"endpoint_url\": \"http://127.0.0.1:9000\"}'") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: must be a JSON object of filesystem options, not {type(value).__name__}")
    return dict(value)


#: Seconds a remote read may wait for a connection or for the next bytes of an answer.
DEFAULT_TIMEOUT = 60.0
#: The storage option that holds it (segaudit's own: it is translated, never passed on).
TIMEOUT_OPTION = "timeout"
#: S3 requests are tried this often (s3fs retries a timed-out request on its own; botocore's
#: retries are switched off so that the tries do not multiply): a dead endpoint costs at most
#: this many timeouts, plus s3fs's short back-off.
S3_TRIES = 2


def timeout_of(storage_options: dict | None) -> float:
    """The seconds of the storage options' ``"timeout"`` (:data:`DEFAULT_TIMEOUT` if absent).

    Raises
    ------
    InputError
        When it is not a positive, finite number of seconds.
    """
    value = (storage_options or {}).get(TIMEOUT_OPTION, DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise InputError(f"--timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def filesystem_options(url: str, storage_options: dict | None) -> dict:
    """The keyword arguments of ``url``'s fsspec filesystem: the storage options with segaudit's
    ``"timeout"`` turned into the filesystem's own bounds on every wait.

    http(s): aiohttp's connect and per-read timeouts (``client_kwargs["timeout"]``); s3: botocore's
    ``connect_timeout`` and ``read_timeout`` with :data:`S3_TRIES` tries in all. What the options
    already set is kept. Other protocols get the options without ``"timeout"`` (their own timeout
    settings, if any, are theirs to give).

    Parameters
    ----------
    url : str
        The URL to be opened (its protocol decides the settings).
    storage_options : dict or None
        As parsed by :func:`parse_storage_options`.

    Returns
    -------
    dict
    """
    options = dict(storage_options or {})
    seconds = timeout_of(options)
    options.pop(TIMEOUT_OPTION, None)
    protocol = url.split("://", 1)[0].lower()
    if protocol in ("http", "https"):
        client_kwargs = dict(options.get("client_kwargs") or {})
        if "timeout" not in client_kwargs:
            try:
                import aiohttp
            except ImportError:  # fsspec says which package is missing
                return options
            client_kwargs["timeout"] = aiohttp.ClientTimeout(total=None, connect=seconds, sock_connect=seconds,
                                                             sock_read=seconds)
        options["client_kwargs"] = client_kwargs
    elif protocol in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", seconds)
        config.setdefault("read_timeout", seconds)
        config.setdefault("retries", {"max_attempts": 1})
        options["config_kwargs"] = config
    return options


def bound_retries(fs) -> None:
    """Let an s3fs filesystem try a request :data:`S3_TRIES` times at most (s3fs's own default
    is 5, each a full timeout long; it is a class attribute, not an option)."""
    if type(fs).__name__ == "S3FileSystem" and getattr(fs, "retries", 0) > S3_TRIES:
        fs.retries = S3_TRIES


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it came from) is a wait that ran out of time."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def remote_error(url: str, exc: BaseException, what: str = "", timeout: float | None = None) -> InputError:
    """One line naming the (redacted) URL and what went wrong with it, for any filesystem error.

    Parameters
    ----------
    url : str
        The URL that was read.
    exc : BaseException
        What the filesystem (s3fs, gcsfs, aiohttp, botocore ...) raised.
    what : str, optional
        What the URL is (``"prediction store"``, ``"masks directory"``), to start the message.
    timeout : float, optional
        The seconds a wait was allowed (named when ``exc`` is a timeout).

    Returns
    -------
    InputError
    """
    shown = f"{what} {redact(url)}" if what else redact(url)
    name = type(exc).__name__
    text = one_line(exc, name)
    chain = [exc, exc.__cause__, exc.__context__]
    names = " ".join(type(e).__name__ for e in chain if e is not None)
    if timed_out(exc):
        limit = f"{timeout:g} s" if timeout is not None else "the --timeout"
        return InputError(f"{shown}: no answer within {limit} ({name}); the endpoint accepted the connection "
                          "but did not reply: check the address, or raise --timeout for a slow endpoint")
    if "NoCredentials" in names or "Unable to locate credentials" in text or "credentials" in text.lower() \
            and "invalid" not in text.lower():
        problem = ("no credentials found: set them in the environment (AWS_ACCESS_KEY_ID and "
                   "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws for S3; GOOGLE_APPLICATION_CREDENTIALS for GCS), "
                   "or pass --storage-options '{\"anon\": true}' for a public bucket")
    elif isinstance(exc, TypeError) and "keyword argument" in text:  # an option the filesystem does not take
        problem = f"bad --storage-options for {url.split('://', 1)[0]}:// ({text})"
    elif isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text or "NoSuchKey" in text:
        problem = "not found (no such bucket, key or file)"
    elif isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        problem = f"access denied ({text})"
    elif "Connect" in names or "Connect" in text or "Timeout" in names or isinstance(exc, ConnectionError):
        problem = f"cannot reach the endpoint ({name}: {text})"
    else:
        problem = f"{name}: {text}"
    return InputError(f"{shown}: {problem}")


def filesystem(url: str, storage_options: dict | None = None, what: str = ""):
    """The fsspec filesystem of ``url`` and the path inside it.

    Parameters
    ----------
    url : str
        A URL fsspec knows the protocol of.
    storage_options : dict, optional
        Keyword arguments of the filesystem (``endpoint_url``, ``anon``, ``client_kwargs`` ...).
    what : str, optional
        What the URL is, for error messages.

    Returns
    -------
    (fsspec.AbstractFileSystem, str)

    Raises
    ------
    InputError
        When fsspec does not know the protocol, its filesystem package is not installed, or the
        options are not the filesystem's.
    """
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{what} {redact(url)}: reading URLs needs fsspec: pip install fsspec (or 'segaudit[s3]' for s3://)".strip()) from None
    protocol = url.split("://", 1)[0].lower()
    options = filesystem_options(url, storage_options)
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
        bound_retries(fs)
        return fs, path
    except ImportError:
        needs = _EXTRAS.get(protocol, f"the fsspec filesystem of {protocol}://")
        raise InputError(f"{what} {redact(url)}: reading {protocol}:// URLs needs {needs}".strip()) from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise InputError(f"{what} {redact(url)}: fsspec knows no filesystem for {protocol}://".strip()) from None
        raise remote_error(url, exc, what, timeout_of(storage_options)) from None
    except TypeError as exc:  # an option the filesystem does not take
        raise InputError(f"{what} {redact(url)}: bad --storage-options for {protocol}://: {one_line(exc)}".strip()) \
            from None
    except Exception as exc:  # noqa: BLE001 (each filesystem raises its own types)
        raise remote_error(url, exc, what, timeout_of(storage_options)) from None
