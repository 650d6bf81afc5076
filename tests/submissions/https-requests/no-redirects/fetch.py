#!/usr/bin/env python3
"""Reference solution for https-requests.

    python3 fetch.py URL CAFILE

Fetches URL with requests, trusting CAFILE only, following redirects. Prints the status code,
the Content-Type header and the body, each from a new line. Exit 0 for any HTTP answer
(a 404 is an answer); exit 1 with a message on stderr if there is none (TLS, connection).
"""

import sys

import requests


def main() -> int:
    url, cafile = sys.argv[1], sys.argv[2]
    try:
        r = requests.get(url, verify=cafile, timeout=10, allow_redirects=False)
    except requests.exceptions.SSLError as exc:
        print(f'fetch: the server could not be verified: {exc}', file=sys.stderr)
        return 1
    except requests.exceptions.RequestException as exc:
        print(f'fetch: {exc}', file=sys.stderr)
        return 1
    print(r.status_code)
    print(r.headers.get('Content-Type', ''))
    sys.stdout.write(r.text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
