"""Random JSON schemas that a tiny random model can complete within a few hundred tokens:
what the grammar tests (response formats, tool parameters) draw from."""


def random_schema(rng, depth=0):
    """Nested objects, arrays, enums, required fields, integers with bounds, short strings."""
    kinds = ["integer", "string", "enum", "boolean", "number"] + (["object", "array"] if depth < 2 else [])
    kind = kinds[rng.integers(len(kinds))]
    if kind == "integer":
        lo = int(rng.integers(-50, 50))
        return {"type": "integer", "minimum": lo, "maximum": lo + int(rng.integers(0, 200))}
    if kind == "string":
        return {"type": "string", "maxLength": int(rng.integers(1, 8))}
    if kind == "enum":
        return {"enum": [f"v{i}" for i in range(int(rng.integers(1, 4)))] + [int(rng.integers(0, 9))]}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "number":
        return {"type": "number"}
    if kind == "array":
        lo = int(rng.integers(0, 2))
        return {"type": "array", "items": random_schema(rng, depth + 1), "minItems": lo,
                "maxItems": lo + int(rng.integers(1, 3))}
    names = [f"k{i}" for i in range(int(rng.integers(1, 4)))]
    props = {n: random_schema(rng, depth + 1) for n in names}
    required = [n for n in names if rng.random() < 0.7]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}
