#!/usr/bin/env python3
"""Regenerates fuzz/seeds/documents/ (the JSON literals of the hcs-schema tests and
examples/empty-vm.json) and fuzz/dict/documents.dict (every JSON property name and enum
spelling of crates/hcs-schema/src/generated.rs, plus a few JSON tokens).

Usage: python3 fuzz/tools/gen_seeds_dict.py   (from any directory)
"""
import hashlib
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def main():
    seeds = os.path.join(ROOT, "fuzz", "seeds", "documents")
    os.makedirs(seeds, exist_ok=True)
    src = read("crates/hcs-schema/tests/samples.rs") + read("crates/hcs-schema/tests/rules.rs")
    seen = set()
    for lit in re.findall(r'r#"(.*?)"#', src, re.S):
        lit = lit.strip()
        if not lit or lit in seen or lit[0] not in "{[":
            continue
        seen.add(lit)
        name = hashlib.sha1(lit.encode()).hexdigest()[:12] + ".json"
        with open(os.path.join(seeds, name), "w", encoding="utf-8") as f:
            f.write(lit)
    with open(os.path.join(seeds, "empty-vm.json"), "w", encoding="utf-8") as f:
        f.write(read("examples/empty-vm.json"))

    generated = read("crates/hcs-schema/src/generated.rs")
    names = set(re.findall(r'rename = "([^"]+)"', generated))
    names |= set(re.findall(r'=> "([A-Za-z0-9_]+)"', generated))
    tokens = ["{", "}", "[", "]", ":", ",", "null", "true", "false", "-0", "1e400",
              "18446744073709551616", "-9223372036854775809", "4294967296",
              '"\\ud800"', '"\\u0000"', "2", "1"]
    os.makedirs(os.path.join(ROOT, "fuzz", "dict"), exist_ok=True)
    with open(os.path.join(ROOT, "fuzz", "dict", "documents.dict"), "w", encoding="utf-8") as f:
        f.write("# libFuzzer dictionary for the documents target: every JSON property name and enum\n"
                "# spelling of crates/hcs-schema/src/generated.rs, plus JSON tokens.\n"
                "# Regenerate with: python3 fuzz/tools/gen_seeds_dict.py\n")
        for tok in tokens:
            f.write('"%s"\n' % tok.replace("\\", "\\\\").replace('"', '\\"'))
        for name in sorted(names):
            f.write('"\\"%s\\""\n' % name)
    print(f"{len(seen) + 1} seeds, {len(names)} dictionary names")


if __name__ == "__main__":
    main()
