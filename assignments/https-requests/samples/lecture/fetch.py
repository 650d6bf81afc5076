# The lecture's requests example, given the URL and the CA file as the handout says.
import sys
import requests
r = requests.get(sys.argv[1], verify=sys.argv[2])
print(r.status_code)
print(r.headers['Content-Type'])
print(r.text, end='')
