import sys

import requests

session = requests.Session()
session.verify = sys.argv[2]  # trust exactly the CA file given
try:
    response = session.get(sys.argv[1], timeout=10)
except requests.RequestException as error:
    sys.exit(f"fetch failed: {error}")
print(response.status_code, response.headers.get("Content-Type", ""), response.text, sep="\n", end="")
