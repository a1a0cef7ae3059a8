"""Secrets stay secret: what SHOW, reprs, errors and logs print of a cloud's url, what the
prompt's history file keeps, and the warning for a secret on the command line."""
from __future__ import annotations

import json
import os
import re
import socket
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st
from terminal import Terminal
from test_cli import cli, make

import monotone
from monotone import redact
from monotone.cloud import CloudError, open_cloud, secret_option
from monotone.settings import CloudSettings

# redact.url ---------------------------------------------------------------------------

URLS = [
    # (text, what it shows)
    ("http://KEY:SECRET@host:9000", "http://KEY:(secret)@host:9000"),
    ("https://user:p%40ss@example.com/a/b?x=1#top",
     "https://user:(secret)@example.com/a/b?x=1#top"),
    ("http://tok3n@host/x", "http://(secret)@host/x"),              # a token: all of it
    ("sftp://me:pa:ss@h:22/dir", "sftp://me:(secret)@h:22/dir"),     # the first colon splits
    ("http://me:p@ss@host", "http://me:(secret)@host"),              # the last '@' ends it
    ("KEY:SECRET@host:9000", "KEY:(secret)@host:9000"),              # no scheme (s3's url)
    # an unescaped '/' in a password (AWS secret keys have them): to the last '@', so a
    # host:port/path with an '@' is cut too
    ("http://AK:wJal/K7+bP=@h:9000/x", "http://AK:(secret)@h:9000/x"),
    ("http://h:9000/a@b", "http://h:(secret)@b"),
    ("https://b.s3.amazonaws.com/o?X-Amz-Credential=AK%2F1&X-Amz-Signature=f00d&versionId=3",
     "https://b.s3.amazonaws.com/o?X-Amz-Credential=(secret)&X-Amz-Signature=(secret)"
     "&versionId=3"),
    ("https://acct.blob.core.windows.net/c?sv=2022&sig=abc%3D;token=t#f",
     "https://acct.blob.core.windows.net/c?sv=2022&sig=(secret);token=(secret)#f"),
    ("GET 'http://a:b@c/d' failed, then ftp://x:yz@w", "GET 'http://a:(secret)@c/d' failed, "
     "then ftp://x:(secret)@w"),
    # unchanged
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("host:9000", "host:9000"),
    ("http://user:@host", "http://user:@host"),                     # no password to hide
    ("http://host/path/me@there", "http://host/path/me@there"),     # '@' in the path
    ("/data/clouds/a@b", "/data/clouds/a@b"),
    ("s3://bucket/key?versionId=3&token=", "s3://bucket/key?versionId=3&token="),
    ("mail me at a@b.c", "mail me at a@b.c"),                       # words, not a URL
    ("", ""),
]


@pytest.mark.parametrize("text, shown", URLS)
def test_url_hides_passwords_and_secret_query_values(text, shown):
    assert redact.url(text) == shown


def test_secrets_are_what_url_hides_as_written_and_decoded():
    assert redact.secrets("https://user:p%40ss@h/o?X-Amz-Signature=f00d&a=1") == \
        ["p%40ss", "p@ss", "f00d"]
    assert redact.secrets("http://127.0.0.1:9000") == []


# redact.command -------------------------------------------------------------------------

COMMANDS = [
    ("CREATE CLOUD s3 (type 's3', url 'http://h:9000', secret_key 'wJalrXUt')",
     "CREATE CLOUD s3 (type 's3', url 'http://h:9000', secret_key '(secret)')"),
    # keywords and option names in any case, quotes of both kinds
    ('create cloud s3 (TYPE "s3", Secret_Key "wJal", PASSWORD \'pw\')',
     'create cloud s3 (TYPE "s3", Secret_Key "(secret)", PASSWORD \'(secret)\')'),
    # the secret before the url; several options; a url with credentials
    ("CREATE CLOUD c (secret_key 'k1', url 'http://u:pw@h/x?token=t', debug true, "
     "password 'p2')",
     "CREATE CLOUD c (secret_key '(secret)', url 'http://u:(secret)@h/x?token=(secret)', "
     "debug true, password '(secret)')"),
    ("CREATE CLOUD s3 (type 's3', url 'KEY:SECRET@h:9000')",
     "CREATE CLOUD s3 (type 's3', url 'KEY:(secret)@h:9000')"),
    ("ALTER CLOUD c SET (secret_key 'new')", "ALTER CLOUD c SET (secret_key '(secret)')"),
    ("CREATE STORAGE cold (encryption 'aes', encryption_key '00ff00ff')",
     "CREATE STORAGE cold (encryption 'aes', encryption_key '(secret)')"),
    # an option a protocol takes (secret_option's words), the name quoted too
    ("CREATE CLOUD g (type 'gcs', url 'b', 'sas_token' 'sv=1&sig=2', account_name 'me')",
     "CREATE CLOUD g (type 'gcs', url 'b', 'sas_token' '(secret)', account_name 'me')"),
    # what does not parse is still stored: a value not quoted, a comma or a quote left out
    ("CREATE CLOUD c (password ab-cd$e, debug true)",
     "CREATE CLOUD c (password '(secret)', debug true)"),
    ("CREATE CLOUD c (type 's3' secret_key 'abc')",
     "CREATE CLOUD c (type 's3' secret_key '(secret)')"),
    ("CREATE CLOUD c (secret_key 'abc", "CREATE CLOUD c (secret_key '(secret)'"),
    ("SET token TO 'x'; SHOW CLOUDS", "SET token TO '(secret)'; SHOW CLOUDS"),
    ("set password = 12345", "set password = '(secret)'"),
    # any string with a URL with credentials
    ("SHOW CLOUD 'http://u:pw@h'", "SHOW CLOUD 'http://u:(secret)@h'"),
    # unchanged
    ("CREATE CLOUD mock (type 'mock')", "CREATE CLOUD mock (type 'mock')"),
    ("CREATE CLOUD s3 (type 's3', url 'http://127.0.0.1:9000', debug true)",
     "CREATE CLOUD s3 (type 's3', url 'http://127.0.0.1:9000', debug true)"),
    ("ALTER CLOUD mykey RENAME TO token", "ALTER CLOUD mykey RENAME TO token"),
    ("CREATE STORAGE keys (path 'me@there', cloud 'secret')",
     "CREATE STORAGE keys (path 'me@there', cloud 'secret')"),
    ("DROP CLOUD IF EXISTS password", "DROP CLOUD IF EXISTS password"),
    ("SHOW   partitions  # a comment, secret_key 'in a comment' is not a command",
     "SHOW   partitions  # a comment, secret_key 'in a comment' is not a command"),
    ("REFRESH PARTITIONS BETWEEN 0 AND 1.5", "REFRESH PARTITIONS BETWEEN 0 AND 1.5"),
    ("'", "'"),
    ("", ""),
]


@pytest.mark.parametrize("text, stored", COMMANDS)
def test_command_hides_secret_values_and_keeps_the_rest(text, stored):
    assert redact.command(text) == stored


@given(st.text(alphabet="abc'\" ()=,;:/@?&#\n-_.", max_size=40))
def test_command_takes_any_text_and_twice_is_once(text):
    once = redact.command(text)
    assert redact.command(once) == once


@given(st.text(alphabet="abcXYZ0189/+=-_", min_size=6, max_size=30), st.sampled_from(["'", '"']))
def test_a_secret_never_survives_command(secret, quote):
    for text in (f"CREATE CLOUD c (type 's3', secret_key {quote}{secret}{quote})",
                 f"ALTER CLOUD c SET (url {quote}http://me:{secret}@h{quote}, debug true)"):
        assert secret not in redact.command(text)


def test_the_word_list_is_the_clouds():
    assert secret_option("access_key") and secret_option("X_SAS_TOKEN")
    assert secret_option("signature_version") and secret_option("sig")
    assert not secret_option("account_name") and not secret_option("region")


# SHOW, reprs, errors and logs of a cloud with credentials in its url ----------------------

def test_show_clouds_and_repr_hide_the_urls_password(db, repo):
    db.execute("CREATE CLOUD m (type 'mock', url 'http://KEY:URLPASS9@host:9000/x?token=TOK7', "
               "secret_key 'KEYPASS9')")
    for text in (db.execute("SHOW CLOUDS"), db.execute("SHOW CLOUD m"),
                 json.dumps(db.show("CLOUDS"))):
        assert "URLPASS9" not in text and "TOK7" not in text and "KEYPASS9" not in text
        assert "http://KEY:(secret)@host:9000/x?token=(secret)" in text
    db.close()
    # the url is kept whole where the processes that use it read it (config.json, 0600)
    with open(os.path.join(repo, "config.json")) as f:
        clouds = json.load(f)["clouds"]
    assert [c["url"] for c in clouds] == ["http://KEY:URLPASS9@host:9000/x?token=TOK7"]
    assert stat.S_IMODE(os.stat(os.path.join(repo, "config.json")).st_mode) == 0o600
    shown = repr(CloudSettings("m", type="http", url="http://u:URLPASS9@h", password="KEYPASS9"))
    assert shown == "CloudSettings('m', type='http', url='http://u:(secret)@h')"


def test_a_cloud_error_names_the_place_without_the_urls_password(db, repo):
    # an http cloud on a port nobody listens on (bound, so no one else can take it)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        db.execute(f"CREATE CLOUD h (type 'http', url 'http://me:URLPASS9@127.0.0.1:{port}/b', "
                   "debug true)")
        with pytest.raises(monotone.MonotoneError) as e:
            db.execute("CREATE STORAGE cs (cloud 'h')")  # its manifest is written at once
    assert "cloud 'h' (http) http://me:(secret)@127.0.0.1:" in str(e.value)
    assert "URLPASS9" not in str(e.value)
    db.close()
    with open(os.path.join(repo, "log")) as f:
        log = f.read()
    # debug: each request (the first: its manifest's pointer asked for)
    assert re.search(rf"cloud h: GET \S+ http://me:\(secret\)@127\.0\.0\.1:{port}/b/", log)
    assert "URLPASS9" not in log


def test_a_cloud_libraries_message_is_scrubbed_of_the_urls_secrets(tmp_path):
    settings = CloudSettings("m", type="mock", url="http://me:p%40ss99@h/?sig=SIGVAL1")
    objects = open_cloud(settings, "uuid", str(tmp_path))

    def fail(timeout):
        raise OSError("refused: http://me:p%40ss99@h/ (user me, password p@ss99, sig SIGVAL1)")

    with pytest.raises(CloudError) as e:
        objects._call("GET", "x", fail)
    assert "p%40ss99" not in str(e.value) and "p@ss99" not in str(e.value)
    assert "SIGVAL1" not in str(e.value) and "(secret)" in str(e.value)


# the prompt's history ---------------------------------------------------------------------

SECRET, URL_SECRET = "wJalrXUtnFEMI", "URLPASS9"
CREATE = (f"CREATE CLOUD c (type 'mock', url 'http://me:{URL_SECRET}@h', "
          f"secret_key '{SECRET}'); SHOW CLOUD c")
STORED = "CREATE CLOUD c (type 'mock', url 'http://me:(secret)@h', secret_key '(secret)'); " \
         "SHOW CLOUD c"


@pytest.fixture
def home(tmp_path):
    """A HOME of the test's own: the real ~/.monotone_history is never touched."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def session(repo: str, home: str, front_end: list[str], lines: list[tuple[str, bytes]]) -> bytes:
    """The prompt on a pseudo-terminal with HOME at home: type each line, wait for what it
    shows, then quit; what the terminal showed."""
    with Terminal(repo, front_end, HOME=home, COLUMNS="200") as term:
        term.until(b"monotone>")
        for line, shows in lines:
            term.type(line.encode() + b"\r")
            term.until(shows)
        term.quit()
        return term.seen


def test_history_is_private_and_holds_no_secret(repo, home, front_end):
    seen = session(repo, str(home), front_end, [(CREATE, b'"(secret)"')])
    assert b"history is not saved" not in seen
    path = home / ".monotone_history"
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    text = path.read_text()
    assert SECRET not in text and URL_SECRET not in text
    assert f"+{STORED}\n" in text
    # the next session reads it back: the stored line is the one typed (redacted)
    session(repo, str(home), front_end, [("SHOW CLOUDS", b'"(secret)"')])
    assert f"+{STORED}\n" in path.read_text() and "+SHOW CLOUDS\n" in path.read_text()


def test_a_history_others_could_read_is_made_private(repo, home, front_end):
    path = home / ".monotone_history"
    path.write_text("\n# earlier\n+SHOW STORAGES\n")
    os.chmod(path, 0o644)
    session(repo, str(home), front_end, [(CREATE, b'"(secret)"')])
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("\n# earlier\n+SHOW STORAGES\n") and f"+{STORED}\n" in text
    assert SECRET not in text


def test_a_linked_history_is_not_written_through(repo, tmp_path, home, front_end):
    target = tmp_path / "elsewhere"
    target.write_text("not a history\n")
    os.chmod(target, 0o644)
    os.symlink(target, home / ".monotone_history")
    seen = session(repo, str(home), front_end, [(CREATE, b'"(secret)"'),
                                                ("SHOW CLOUDS", b'"(secret)"')])
    assert seen.count(b"history is not saved") == 1 and b"symbolic link" in seen
    assert target.read_text() == "not a history\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert os.path.islink(home / ".monotone_history")


def test_a_history_that_is_no_file_is_left_alone(repo, home):
    (home / ".monotone_history").mkdir()
    seen = session(make(repo), str(home), [], [("SHOW serial", b"true")])
    assert seen.count(b"history is not saved") == 1 and b"Is a directory" in seen
    assert os.listdir(home / ".monotone_history") == []


# a secret on the command line -----------------------------------------------------------

def test_a_secret_on_the_command_line_is_warned_about_and_runs(repo):
    out = cli(repo, "CREATE CLOUD c (type 'mock', secret_key 'abcd1234'); SHOW CLOUDS")
    assert out.returncode == 0, out.stderr
    assert "c" in json.loads(out.stdout)
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "/proc/PID/cmdline" in warnings[0]
    assert f"monotone {repo} < create_cloud.sql" in warnings[0]
    assert "abcd1234" not in out.stderr


def test_no_warning_without_a_secret_or_on_standard_input(repo):
    out = cli(repo, "CREATE CLOUD c (type 'mock', url '/data/c'); SHOW CLOUDS")
    assert out.returncode == 0 and out.stderr == ""
    out = cli(repo, stdin="ALTER CLOUD c SET (secret_key 'abcd1234')\nSHOW CLOUD c\n")
    assert out.returncode == 0 and out.stderr == ""
    assert json.loads(out.stdout)["password"] == "(secret)"
