"""JSON for ``dockyard-runtime``'s container-start path: the stdlib json package's own C codec
(``_json``), without the package's Python layer, which imports ``re`` and through it ``enum``:
~6 ms of the ~30 ms a ``create`` takes. Same parser and encoder as ``json``; only the error path
goes to ``json`` itself, so a bad document raises ``json.JSONDecodeError`` (a ValueError) with
the usual message. Only what the runtime needs: str documents, no hooks.
"""

import _json

_WS = " \t\n\r"  # JSON's whitespace, all that may surround the value


class _Context:  # what the C scanner reads from json.JSONDecoder
    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = float  # NaN, Infinity, -Infinity, as json does


_scan = _json.make_scanner(_Context())


def loads(text: str):
    doc = text.strip(_WS)
    try:
        obj, end = _scan(doc, 0)
    except Exception:  # noqa: BLE001 - StopIteration or JSONDecodeError: json says it properly
        end = -1
    if end != len(doc):
        import json

        return json.loads(text)  # raises the precise error
    return obj


def load(f):
    return loads(f.read())


def _unserializable(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj, sort_keys: bool = False, separators: tuple[str, str] = (", ", ": ")) -> str:
    """json.dumps(obj, sort_keys=..., separators=..., check_circular=False)."""
    enc = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii, None,
                             separators[1], separators[0], sort_keys, False, True)
    return "".join(enc(obj, 0))
