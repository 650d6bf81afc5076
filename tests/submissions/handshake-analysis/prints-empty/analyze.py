import json
print(json.dumps({"connections": []}))
