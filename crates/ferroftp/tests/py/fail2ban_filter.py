"""Run a fail2ban filter's failregex over a log file the way fail2ban does, without fail2ban.

Usage: fail2ban_filter.py FILTER.conf LOGFILE

Prints one JSON object per log line: {"line": N, "host": "1.2.3.4" or null}.

What is emulated (fail2ban 0.10 and later):
- the filter file is read as fail2ban reads it: INI sections, `%(name)s` interpolation,
  `failregex` and `ignoreregex` one expression per line;
- `<HOST>` becomes fail2ban's host expression: an IPv4 address (optionally IPv4-mapped), an
  IPv6 address (optionally in brackets) or a host name, in the named groups ip4, ip6 and dns;
  `<ADDR>`, `<IP4>` and `<IP6>` likewise;
- the date is found (ISO 8601, as fail2ban's default detection finds it anywhere in the line)
  and cut out of the line before the expressions are searched, as fail2ban does;
- a line matching `ignoreregex` is ignored; otherwise the first `failregex` that matches
  (re.search, so `^` anchors at the start of the line) gives the host.
"""

import configparser
import json
import re
import sys

# fail2ban's address expressions (fail2ban/server/ipdns.py and failregex.py).
IP4 = r"(?:\d{1,3}\.){3}\d{1,3}"
IP6 = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)"
TAGS = {
    "IP4": r"(?:::f{4,6}:)?(?P<ip4>%s)" % IP4,
    "IP6": r"(?P<ip6>%s)" % IP6,
}
TAGS["ADDR"] = r"\[?(?:%s|%s)\]?" % (TAGS["IP4"], TAGS["IP6"])
TAGS["HOST"] = r"(?:%s|%s)" % (TAGS["ADDR"], r"(?P<dns>[\w\-.^_]*\w)")

# What fail2ban's default date templates find in our lines: ISO 8601 with fraction and zone.
DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?))?"
)


def expressions(value):
    out = []
    for line in (value or "").splitlines():
        line = line.strip()
        if not line:
            continue
        out.append(re.compile(re.sub(r"<(IP4|IP6|ADDR|HOST)>", lambda m: TAGS[m.group(1)], line)))
    return out


def main():
    conf, logfile = sys.argv[1], sys.argv[2]
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
    parser.optionxform = str
    with open(conf, encoding="utf-8") as f:
        parser.read_file(f)
    definition = parser["Definition"]
    fail = expressions(definition.get("failregex"))
    ignore = expressions(definition.get("ignoreregex"))
    if not fail:
        sys.exit("no failregex in %s" % conf)
    with open(logfile, encoding="utf-8", errors="replace") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            date = DATE.search(line)
            if date:
                line = line[: date.start()] + line[date.end():]
            host = None
            if not any(r.search(line) for r in ignore):
                for r in fail:
                    m = r.search(line)
                    if m:
                        host = m.group("ip4") or m.group("ip6") or m.group("dns")
                        break
            print(json.dumps({"line": n, "host": host}))


if __name__ == "__main__":
    main()
