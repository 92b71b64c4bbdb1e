import json
d = [list(range(1000)) for _ in range(200)]
b = bytearray(8 << 20)
del b
print(len(json.dumps(d)))
