import json
print(json.dumps({"requests": [], "https": []}))
