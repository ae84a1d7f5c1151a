#!/usr/bin/python3
"""check_stats.py SCHEMA.json STATS.json... - validates llmflash --stats files
against the documented schema (python3-jsonschema). Exits 1 on the first
file that does not conform, naming the key."""
import json
import sys

import jsonschema


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    bad = 0
    for path in sys.argv[2:]:
        with open(path) as f:
            doc = json.load(f)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for e in errors[:10]:
            print(f"{path}: {'/'.join(map(str, e.path)) or '(top)'}: {e.message}")
        print(f"{path}: {'ok' if not errors else f'{len(errors)} problems'}")
        bad += bool(errors)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
