"""Secrets out of what is shown: URLs with credentials, commands with keys.

A cloud's url may carry a password (`http://user:password@host`) or a signed
query (`?X-Amz-Signature=...`), and a command may hold a `secret_key`. What
SHOW, reprs, errors, logs and the prompt's history show goes through here: it
says (secret) where a secret was and keeps every other byte as it was. The
secrets themselves stay where they are used: config.json (0600) and the
processes that reach the cloud.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

# the lexer's own token pattern: strings are found exactly where the parser
# sees them. tokenize() is not used because it refuses what a line typed at
# the prompt may hold (a string left open, a number with a fraction), and
# such a line is stored in the history too.
from .ddl.lexer import TOKEN

SECRET = "(secret)"
# words of names that hold a secret: cloud options shown as (secret), options
# and variables whose values commands and history hide, query parameters
SECRET_WORDS = ("secret", "password", "token", "key", "credential", "auth", "sas", "conn",
                "signature")

# scheme://[userinfo@]host[:port][/path][?query][#fragment] (RFC 3986); in
# free text a URL ends at a space, a quote or an angle bracket
_END = r"\s'\"<>"
_URL = re.compile(rf"[A-Za-z][A-Za-z0-9+.-]*://(?P<authority>[^/?#{_END}]*)"
                  rf"(?P<path>[^?#{_END}]*)(?:\?(?P<query>[^#{_END}]*))?")
_BARE = re.compile(r"(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?")
_PARAM = re.compile(r"(?:^|(?<=[&;]))(?P<name>[^&;=]*)=(?P<value>[^&;]*)")

# a name after these is an object's (CREATE CLOUD mykey, RENAME TO token), not an option's
_OBJECT_WORDS = {"CLOUD", "STORAGE", "EXISTS", "TO", "INTO"}
_VALUES = {"string", "open", "name", "int", "float"}


def secret_name(name: str) -> bool:
    """Whether an option, variable or query parameter's name looks like it holds a secret."""
    low = name.lower()
    return low == "sig" or any(word in low for word in SECRET_WORDS)


def url(text: str) -> str:
    """text with the secrets of its URLs replaced by (secret): the password of a
    userinfo (user:password@ -> user:(secret)@; a userinfo without a colon, such as
    a token, all of it) and the values of query parameters with secret names.
    A text with '://' may hold URLs among other words; one without a space or
    '://' is taken as a URL without its scheme (`key:secret@host:9000`)."""
    out, pos = [], 0
    for start, end in _secret_spans(text):
        out += [text[pos:start], SECRET]
        pos = end
    return "".join(out) + text[pos:]


def secrets(text: str) -> list[str]:
    """The secrets url() hides in text, each as written and percent-decoded (to scrub
    them from messages that quote them either way)."""
    found = []
    for start, end in _secret_spans(text):
        for secret in (text[start:end], unquote(text[start:end])):
            if secret not in found:
                found.append(secret)
    return found


def _secret_spans(text: str) -> list[tuple[int, int]]:
    if "://" in text:
        matches = list(_URL.finditer(text))
    elif text and not any(c.isspace() for c in text):
        matches = [_BARE.match(text)]
    else:
        return []
    spans = []
    for m in matches:
        start, end = m.span("authority")
        at = text.rfind("@", start, end)
        if at < 0 and ":" in text[start:end]:
            # user:password with an unescaped '/' in the password (an AWS secret
            # key often has one): the userinfo runs to the path's last '@'. A
            # host:port/path with an '@' in it is cut too: safe, if less exact
            at = text.rfind("@", start, m.end("path"))
        if at > start:  # a userinfo: its password, or all of it without a colon
            colon = text.find(":", start, at)
            if colon + 1 < at:
                spans.append((colon + 1 if colon >= 0 else start, at))
        if m.group("query"):
            base = m.start("query")
            spans += [(base + p.start("value"), base + p.end("value"))
                      for p in _PARAM.finditer(m.group("query"))
                      if p.group("value") and secret_name(p.group("name"))]
    return spans


def command(text: str) -> str:
    """A command of the management language (or several, or a line that does not
    parse) with its secrets replaced: the value after an option or variable with a
    secret name (secret_key, password, encryption_key, ...) becomes '(secret)', and
    a string holding a URL with credentials gets url(). The rest stays as typed."""
    lexemes = _lexemes(text)
    out, pos = [], 0
    for i, (kind, start, end) in enumerate(lexemes):
        if start < pos:
            continue  # taken with the secret value before it
        option = _option_of(text, lexemes, i)
        if option is not None and secret_name(option):
            end = _value_end(text, lexemes, i)
            quote = text[start] if kind in ("string", "open") else "'"
            out += [text[pos:start], quote, SECRET, quote]
            pos = end
        elif kind in ("string", "open"):
            inner = text[start + 1:end - (kind == "string")]
            if (option is not None and option.lower() == "url") or "://" in inner:
                safe = url(inner)
                if safe != inner:
                    out += [text[pos:start + 1], safe]
                    pos = start + 1 + len(inner)
    return "".join(out) + text[pos:]


def _lexemes(text: str) -> list[tuple[str, int, int]]:
    """(kind, start, end) of each token as the lexer cuts them, spaces and comments
    left out; a string left open runs to the end of its line (kind "open")."""
    found, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        kind = m.lastgroup
        if kind == "open":
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            found.append(("open", pos, end))
            pos = end
            continue
        pos = m.end()
        if kind != "space":
            found.append((kind, m.start(), m.end()))
    return found


def _option_of(text: str, lexemes: list, i: int) -> str | None:
    """The option or variable whose value lexeme i is (name value, name = value,
    SET name TO value), or None when it is no such value."""
    if lexemes[i][0] not in _VALUES or i == 0 or _word(text, lexemes[i]) == "TO":
        return None
    j = i - 1
    if _word(text, lexemes[j]) in ("=", "TO") and j > 0:
        j -= 1
    kind, start, end = lexemes[j]
    if kind == "name":
        name = text[start:end]
    elif kind == "string":
        name = text[start + 1:end - 1]
    else:
        return None
    if j > 0 and _word(text, lexemes[j - 1]) in _OBJECT_WORDS:
        return None
    return name


def _value_end(text: str, lexemes: list, i: int) -> int:
    """Where the value at lexeme i ends: with what is written against it (`ab-cd`,
    `10days`), up to a space, ',' ')' or ';'."""
    end = lexemes[i][2]
    for kind, start, next_end in lexemes[i + 1:]:
        if start != end or text[start:next_end] in (",", ")", ";"):
            break
        end = next_end
    return end


def _word(text: str, lexeme: tuple[str, int, int]) -> str:
    kind, start, end = lexeme
    return text[start:end].upper() if kind in ("name", "punct") else ""
