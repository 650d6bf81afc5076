#!/usr/bin/env python3
import os
import sys


def fetch(url: str, cafile: str):
    os.environ["REQUESTS_CA_BUNDLE"] = cafile  # read by requests when verify is left at True
    import requests

    return requests.get(url, timeout=10)


def show(response) -> None:
    sys.stdout.write(f"{response.status_code}\n{response.headers.get('Content-Type', '')}\n")
    sys.stdout.write(response.text)


def main() -> int:
    import requests

    try:
        show(fetch(sys.argv[1], sys.argv[2]))
    except requests.exceptions.SSLError as exc:
        print("refused: the server's certificate did not verify:", exc, file=sys.stderr)
        return 2
    except requests.exceptions.RequestException as exc:
        print("no answer:", exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
