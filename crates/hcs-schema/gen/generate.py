#!/usr/bin/env python3
"""Generates crates/hcs-schema/src/generated.rs from HCS-SCHEMA.md.

Usage (from the repository root):

    python3 crates/hcs-schema/gen/generate.py path/to/HCS-SCHEMA.md [output.rs]

The output defaults to ../src/generated.rs next to this script. Standard library only.

What it reads from HCS-SCHEMA.md:
  * section 1, the enum table: `| **Name** | since | `"A"`, `"B"`·2.1 | used by |`;
  * section 2, one `### Name` heading per object type, its "Used by:" / "Top-level"
    line, "No fields" marker and `| Field | `type` | since |` rows;
  * section 3, the extension table (added enum values and added fields).

What it writes (conventions of the crate, see its lib.rs):
  * an enum per schema enum: exact JSON spellings, strict string-only deserialization;
  * a struct per object type: every field `Option<T>`, unknown properties refused,
    deserialization accepted from a JSON object only (never from an array);
  * a `SchemaObject` impl per struct that walks `Guid`-typed fields for validation.
"""

import os
import re
import shutil
import subprocess
import sys

SCALARS = {
    "string": "String",
    "bool": "bool",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "Guid": "String",
    "DateTime": "String",
    "MacAddress": "String",
    "ByteArray": "String",
    "NullableByteArray": "String",
    "string_binary": "String",
    "Any": "serde_json::Value",
}

RUST_KEYWORDS = {
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
    "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final",
    "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
}
# Keywords that cannot be written as raw identifiers.
NOT_RAW = {"self", "Self", "super", "crate", "_"}

# Names a generated type must not take: the std prelude, names used by the generated code,
# and the hand-written items of the crate.
RESERVED_TYPE_NAMES = {
    "Option", "Some", "None", "Result", "Ok", "Err", "Vec", "String", "Box", "ToString",
    "ToOwned", "Default", "Clone", "Copy", "Send", "Sync", "Sized", "Unpin", "Drop", "Fn",
    "FnMut", "FnOnce", "Iterator", "IntoIterator", "DoubleEndedIterator", "ExactSizeIterator",
    "Extend", "PartialEq", "Eq", "PartialOrd", "Ord", "AsRef", "AsMut", "Into", "From",
    "TryFrom", "TryInto", "FromIterator", "Debug", "Hash", "Self", "Serialize", "Deserialize",
    "Deserializer", "Serializer", "BTreeMap", "Value", "HResult", "DocumentError", "Limits",
    "SchemaEnum", "SchemaObject", "SignalValue", "MemoryBacking", "JsonPath",
}

# Section 3 fields whose type is given by the brief of the crate rather than "not given".
SPECIAL_EXTENSION_TYPES = {
    ("Plan9Share", "Flags"): "uint32",
    ("SignalProcessOptions", "Signal"): "@SignalValue",
    ("VirtualMachine_Memory", "Backing"): "@MemoryBacking",
}


def die(msg):
    sys.stderr.write("generate.py: " + msg + "\n")
    sys.exit(1)


def cells(line):
    parts = line.strip().split("|")
    return [p.strip() for p in parts[1:-1]]


def section(text, number):
    """Returns the text of `## <number>.` up to the next `## ` heading."""
    m = re.search(r"^## %d\. .*$" % number, text, re.M)
    if not m:
        die("section %d not found" % number)
    rest = text[m.end():]
    n = re.search(r"^## ", rest, re.M)
    return rest[: n.start()] if n else rest


def parse_enums(sec):
    enums = {}
    order = []
    for line in sec.splitlines():
        if not line.startswith("| **"):
            continue
        c = cells(line)
        if len(c) != 4:
            die("bad enum row: " + line)
        name = c[0].strip("*")
        since = c[1]
        values = []
        for v, vs in re.findall(r'`"([^"]*)"`(?:·(\d+\.\d+))?', c[2]):
            values.append((v, vs or since))
        if not values:
            die("enum without values: " + name)
        used_by = c[3] if c[3] not in ("—", "-", "") else ""
        enums[name] = {"name": name, "since": since, "values": values, "used_by": used_by}
        order.append(name)
    return enums, order


def parse_objects(sec):
    objects = {}
    order = []
    cur = None
    for line in sec.splitlines():
        h = re.match(r"^### (\S+)\s*$", line)
        if h:
            cur = {"name": h.group(1), "used_by": "", "top": False, "empty": False, "fields": []}
            objects[cur["name"]] = cur
            order.append(cur["name"])
            continue
        if cur is None:
            continue
        if line.startswith("Used by:"):
            m = re.match(r"Used by: ([^.]*)\.", line)
            cur["used_by"] = m.group(1).strip() if m else ""
        if line.startswith("Top-level"):
            cur["top"] = True
        if "No fields" in line:
            cur["empty"] = True
        if line.startswith("| ") and not line.startswith("| Field") and not line.startswith("|---"):
            c = cells(line)
            if len(c) != 3:
                die("bad field row in %s: %s" % (cur["name"], line))
            ty = c[1].strip("`")
            cur["fields"].append({"json": c[0], "type": ty, "since": c[2], "ext": None})
    for o in objects.values():
        if o["empty"] and o["fields"]:
            die("object %s says no fields but has some" % o["name"])
        if not o["empty"] and not o["fields"]:
            die("object %s has no fields and no marker" % o["name"])
    return objects, order


def parse_extensions(sec, enums, objects, ext_enums):
    for line in sec.splitlines():
        if not line.startswith("| ") or line.startswith("| where") or line.startswith("|---"):
            continue
        c = cells(line)
        if len(c) != 4:
            die("bad extension row: " + line)
        wheres = [w.strip() for w in c[0].split(",")]
        note = "extension (HCS-SCHEMA.md section 3; sent by %s)" % c[3]
        for where in wheres:
            if where in enums:
                vals = re.findall(r'`"([^"]*)"`', c[1])
                if not vals:
                    die("extension enum row without values: " + line)
                known = {v for v, _ in enums[where]["values"]}
                for v in vals:
                    if v not in known:
                        enums[where]["values"].append((v, "ext"))
                continue
            if where not in objects:
                die("extension for unknown type %s" % where)
            obj = objects[where]
            for fname in [n.strip() for n in c[1].split(",")]:
                special = SPECIAL_EXTENSION_TYPES.get((where, fname))
                if special == "@MemoryBacking":
                    ext_enums["MemoryBacking"] = {
                        "name": "MemoryBacking",
                        "since": "ext",
                        "values": [(v, "ext") for v in re.findall(r'`"([^"]*)"`', c[2])],
                        "used_by": where + " (field " + fname + ")",
                    }
                    ty = "MemoryBacking"
                elif special:
                    ty = special
                elif c[2].startswith("`bool`"):
                    ty = "bool"
                elif c[2].startswith("not given"):
                    ty = "Any"
                else:
                    die("extension %s.%s: cannot tell its type from %r" % (where, fname, c[2]))
                existing = [f for f in obj["fields"] if f["json"] == fname]
                if existing:
                    # A field whose accepted type is widened by the extension.
                    existing[0]["type"] = ty
                    existing[0]["ext"] = note
                else:
                    obj["fields"].append({"json": fname, "type": ty, "since": "ext", "ext": note})


def camel(name):
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p)


def assign_type_names(enums, objects):
    names = {}
    used = set(RESERVED_TYPE_NAMES)
    # Objects first, then enums, each alphabetically: the result does not depend on file order.
    for kind, table in (("object", objects), ("enum", enums)):
        for schema in sorted(table):
            base = camel(schema)
            cand = base
            if cand in used:
                cand = base + ("Schema" if base in RESERVED_TYPE_NAMES else ("Kind" if kind == "enum" else "Object"))
            i = 2
            while cand in used:
                cand = "%s%d" % (base, i)
                i += 1
            used.add(cand)
            names[schema] = cand
    return names


def variant_name(value, taken):
    if value == "":
        cand = "Empty"
    else:
        parts = [p for p in value.split("_") if p]
        cand = parts[0][:1].upper() + parts[0][1:]
        for p in parts[1:]:
            if cand[-1].isdigit() and p[0].isdigit():
                cand += "_" + p
            else:
                cand += p[:1].upper() + p[1:]
        letters = [ch for ch in cand if ch.isalpha()]
        if len(letters) > 1 and all(ch.isupper() for ch in letters):
            cand = cand[:1] + cand[1:].lower()
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", cand):
        die("cannot make a variant name of %r" % value)
    if cand in RUST_KEYWORDS:
        cand += "Value"
    base = cand
    if cand in taken:
        cand = base + "String" if value == "" else base + "Value"
    i = 2
    while cand in taken:
        cand = "%s%d" % (base, i)
        i += 1
    taken.add(cand)
    return cand


def snake(name):
    n = name.replace("QoS", "Qos").replace("PMem", "Pmem").replace("P2P", "P2p").replace("MHz", "Mhz").replace("DWord", "Dword").replace("QWord", "Qword")
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", n)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def field_ident(json_name, taken):
    base = snake(json_name)
    if not re.match(r"^[a-z_][a-z0-9_]*$", base):
        die("cannot make a field name of %r" % json_name)
    cand = base
    i = 2
    while cand in taken:
        cand = "%s_%d" % (base, i)
        i += 1
    taken.add(cand)
    if cand in NOT_RAW:
        return cand + "_"
    if cand in RUST_KEYWORDS:
        return "r#" + cand
    return cand


def parse_type(t):
    """Returns a type tree: ("scalar", name) | ("named", name) | ("vec", tree, n) |
    ("map", keytype, tree) | ("special", name)."""
    t = t.strip()
    if t.startswith("@"):
        return ("special", t[1:])
    m = re.match(r"^Map<([^,]+),\s*(.+)>$", t)
    if m:
        return ("map", m.group(1).strip(), parse_type(m.group(2)))
    m = re.match(r"^<([^,>]+)(?:,\s*(\d+))?> array$", t)
    if m:
        return ("vec", parse_type(m.group(1)), m.group(2))
    if t in SCALARS:
        return ("scalar", t)
    return ("named", t)


class Gen:
    def __init__(self, enums, enum_order, objects, object_order, ext_enums):
        self.enums = enums
        self.enum_order = enum_order
        self.objects = objects
        self.object_order = object_order
        self.ext_enums = ext_enums
        all_enums = dict(enums)
        self.names = assign_type_names(all_enums, objects)
        for e in ext_enums:
            self.names[e] = e
        self.check_references()
        self.boxed = self.find_boxed()
        self.guid_types = self.find_guid_types()

    def check_references(self):
        for o in self.objects.values():
            for f in o["fields"]:
                f["tree"] = parse_type(f["type"])
                for n in self.named_in(f["tree"]):
                    if n not in self.objects and n not in self.enums and n not in self.ext_enums:
                        die("%s.%s refers to unknown type %s" % (o["name"], f["json"], n))
                if f["tree"][0] == "map":
                    k = f["tree"][1]
                    if k not in ("string", "Guid") and not k.startswith("uint"):
                        die("%s.%s: unexpected map key type %s" % (o["name"], f["json"], k))

    def named_in(self, tree):
        if tree[0] == "named":
            return [tree[1]]
        if tree[0] == "vec":
            return self.named_in(tree[1])
        if tree[0] == "map":
            return self.named_in(tree[2])
        return []

    def direct_edges(self, name):
        out = []
        for f in self.objects[name]["fields"]:
            t = f["tree"]
            if t[0] == "named" and t[1] in self.objects:
                out.append(t[1])
        return out

    def reaches(self, src, dst):
        seen = set()
        stack = [src]
        while stack:
            n = stack.pop()
            if n == dst:
                return True
            if n in seen:
                continue
            seen.add(n)
            stack.extend(self.direct_edges(n))
        return False

    def find_boxed(self):
        boxed = set()
        for o in self.objects.values():
            for f in o["fields"]:
                t = f["tree"]
                if t[0] == "named" and t[1] in self.objects and self.reaches(t[1], o["name"]):
                    boxed.add((o["name"], f["json"]))
        return boxed

    def tree_has_guid(self, tree, guid_types):
        if tree[0] == "scalar":
            return tree[1] == "Guid"
        if tree[0] == "named":
            return tree[1] in guid_types
        if tree[0] == "vec":
            return self.tree_has_guid(tree[1], guid_types)
        if tree[0] == "map":
            return tree[1] == "Guid" or self.tree_has_guid(tree[2], guid_types)
        return False

    def find_guid_types(self):
        guid_types = set()
        changed = True
        while changed:
            changed = False
            for o in self.objects.values():
                if o["name"] in guid_types:
                    continue
                if any(self.tree_has_guid(f["tree"], guid_types) for f in o["fields"]):
                    guid_types.add(o["name"])
                    changed = True
        return guid_types

    def rust_type(self, tree):
        kind = tree[0]
        if kind == "scalar":
            return SCALARS[tree[1]]
        if kind == "special":
            return tree[1]
        if kind == "named":
            return self.names[tree[1]]
        if kind == "vec":
            return "Vec<%s>" % self.rust_type(tree[1])
        if kind == "map":
            return "BTreeMap<String, %s>" % self.rust_type(tree[2])
        die("bad tree")

    # ----------------------------------------------------------------- output

    def emit(self):
        out = []
        w = out.append
        w("// @generated by crates/hcs-schema/gen/generate.py from HCS-SCHEMA.md. Do not edit.")
        w("// Regenerate from the repository root with:")
        w("//     python3 crates/hcs-schema/gen/generate.py path/to/HCS-SCHEMA.md")
        w("// (the script formats its output with rustfmt when rustfmt is on PATH).")
        w("")
        w("//! The HCS schema types: one Rust enum per schema enum and one struct per schema object")
        w("//! type of HCS-SCHEMA.md (sections 1 and 2), with the extensions of its section 3.")
        w("//!")
        w("//! Every struct field is an `Option`; the JSON name is kept by `#[serde(rename)]`.")
        w("//! Deserialization is strict: objects come only from JSON objects and refuse unknown")
        w("//! properties; enums come only from their exact, case-sensitive strings.")
        w("")
        w("#![allow(clippy::derive_partial_eq_without_eq)]")
        w("")
        w("use std::collections::BTreeMap;")
        w("use std::fmt;")
        w("")
        w("use serde::{Deserialize, Deserializer, Serialize};")
        w("")
        w("use crate::document::{path_index, path_member};")
        w("use crate::strict::{EnumVisitor, ObjectVisitor};")
        w("use crate::validate::check_guid;")
        w("use crate::{DocumentError, SchemaEnum, SchemaObject};")
        w("")
        w("/// Number of enums generated from HCS-SCHEMA.md section 1 (extension enums not counted).")
        w("pub const SCHEMA_ENUM_COUNT: usize = %d;" % len(self.enum_order))
        w("/// Number of object types generated from HCS-SCHEMA.md section 2.")
        w("pub const SCHEMA_OBJECT_COUNT: usize = %d;" % len(self.object_order))
        w("")
        w("// ===================================================================== enums")
        for name in self.enum_order:
            self.emit_enum(w, self.enums[name], schema_enum=True)
        for name in sorted(self.ext_enums):
            self.emit_enum(w, self.ext_enums[name], schema_enum=False)
        self.emit_signal_value(w)
        w("// ===================================================================== objects")
        for name in self.object_order:
            self.emit_object(w, self.objects[name])
        self.emit_shadows(w)
        return "\n".join(out) + "\n"

    def used_by_doc(self, used_by):
        """`Used by` names as intra-doc links to the Rust types."""
        links = []
        for n in [x.strip() for x in used_by.split(",") if x.strip()]:
            m = re.match(r"^(\w+)(.*)$", n)
            if m and self.names.get(m.group(1)) == m.group(1):
                links.append("[`%s`]%s" % (m.group(1), m.group(2)))
            elif m and m.group(1) in self.names:
                links.append("[`%s`](%s)%s" % (m.group(1), self.names[m.group(1)], m.group(2)))
            else:
                links.append(n)
        return ", ".join(links)

    def emit_enum(self, w, e, schema_enum):
        rust = self.names[e["name"]]
        taken = set()
        variants = [(v, since, variant_name(v, taken)) for v, since in e["values"]]
        if schema_enum:
            w("/// Schema enum `%s` (HCS-SCHEMA.md section 1, since %s)." % (e["name"], e["since"]))
        else:
            w("/// Extension enum `%s` (HCS-SCHEMA.md section 3)." % e["name"])
        w("///")
        w("/// Used by: %s." % (self.used_by_doc(e["used_by"]) or "no object type (payload or reserved)"))
        w("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]")
        w("pub enum %s {" % rust)
        for v, since, var in variants:
            if since == "ext":
                w('    /// `"%s"`: extension value (HCS-SCHEMA.md section 3).' % v)
            else:
                w('    /// `"%s"`, since %s.' % (v, since))
            w('    #[serde(rename = "%s")]' % v)
            w("    %s," % var)
        w("}")
        w("")
        w("impl %s {" % rust)
        w("    /// Every value, in schema order.")
        w("    pub const ALL: &'static [%s] = &[%s];" % (rust, ", ".join("Self::" + var for _, _, var in variants)))
        w("")
        w("    /// The exact JSON spelling of this value.")
        w("    pub const fn as_str(self) -> &'static str {")
        w("        match self {")
        for v, _, var in variants:
            w('            Self::%s => "%s",' % (var, v))
        w("        }")
        w("    }")
        w("")
        w("    /// The value spelled exactly (case-sensitively) `name`, if any.")
        w("    pub fn from_name(name: &str) -> Option<Self> {")
        w("        match name {")
        for v, _, var in variants:
            w('            "%s" => Some(Self::%s),' % (v, var))
        w("            _ => None,")
        w("        }")
        w("    }")
        w("}")
        w("")
        w("impl SchemaEnum for %s {" % rust)
        w('    const SCHEMA_NAME: &\'static str = "%s";' % e["name"])
        w("    const ALL: &'static [Self] = %s::ALL;" % rust)
        w("    fn as_str(self) -> &'static str {")
        w("        %s::as_str(self)" % rust)
        w("    }")
        w("    fn from_name(name: &str) -> Option<Self> {")
        w("        %s::from_name(name)" % rust)
        w("    }")
        w("}")
        w("")
        w("impl fmt::Display for %s {" % rust)
        w("    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {")
        w("        f.write_str(self.as_str())")
        w("    }")
        w("}")
        w("")
        w("impl<'de> Deserialize<'de> for %s {" % rust)
        w("    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {")
        w("        deserializer.deserialize_str(EnumVisitor::<Self>::new())")
        w("    }")
        w("}")
        w("")

    def emit_signal_value(self, w):
        ps = self.names["ProcessSignal"]
        w("/// `SignalProcessOptions.Signal`: a `ProcessSignal` name or, as hcsshim sends for Linux")
        w("/// guests, a signal number (HCS-SCHEMA.md section 3).")
        w("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]")
        w("#[serde(untagged)]")
        w("pub enum SignalValue {")
        w("    /// A named console control signal, e.g. `\"CtrlC\"`.")
        w("    Named(%s)," % ps)
        w("    /// A signal number (Linux guests), e.g. `9`.")
        w("    Number(i32),")
        w("}")
        w("")
        w("impl<'de> Deserialize<'de> for SignalValue {")
        w("    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {")
        w("        deserializer.deserialize_any(crate::strict::SignalVisitor)")
        w("    }")
        w("}")
        w("")

    def emit_object(self, w, o):
        rust = self.names[o["name"]]
        w("/// Schema object `%s` (HCS-SCHEMA.md section 2)." % o["name"])
        w("///")
        if o["used_by"]:
            w("/// Used by: %s." % self.used_by_doc(o["used_by"]))
        else:
            w("/// Used by: none; a top-level document (API input or output) or an `Any` payload.")
        if o["empty"]:
            w("///")
            w("/// Has no fields: sent as `{}` to switch the feature on.")
        w("#[derive(Debug, Clone, Default, PartialEq, Serialize)]")
        w("#[serde(deny_unknown_fields)]")
        w("pub struct %s {" % rust)
        taken = set()
        for f in o["fields"]:
            f["ident"] = field_ident(f["json"], taken)
            ty = self.rust_type(f["tree"])
            if (o["name"], f["json"]) in self.boxed:
                ty = "Box<%s>" % ty
            f["rust_type"] = "Option<%s>" % ty
            if f["ext"] and f["since"] == "ext":
                w("    /// `%s` (`%s`): %s." % (f["json"], f["type"].lstrip("@"), f["ext"]))
            elif f["ext"]:
                w("    /// `%s` (`%s`), since %s; widened by an %s." % (f["json"], f["type"].lstrip("@"), f["since"], f["ext"]))
            else:
                w("    /// `%s` (`%s`), since %s." % (f["json"], f["type"], f["since"]))
            w('    #[serde(rename = "%s", default, skip_serializing_if = "Option::is_none")]' % f["json"])
            w("    pub %s: %s," % (f["ident"], f["rust_type"]))
        w("}")
        w("")
        w("impl<'de> Deserialize<'de> for %s {" % rust)
        w("    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {")
        w("        deserializer.deserialize_map(ObjectVisitor::<Self>::new())")
        w("    }")
        w("}")
        w("")
        w("impl SchemaObject for %s {" % rust)
        w('    const SCHEMA_NAME: &\'static str = "%s";' % o["name"])
        w('    const FIELDS: &\'static [&\'static str] = &[%s];' % ", ".join('"%s"' % f["json"] for f in o["fields"]))
        body = []
        for f in o["fields"]:
            if not self.tree_has_guid(f["tree"], self.guid_types):
                continue
            body.append("if let Some(value) = &self.%s {" % f["ident"])
            body.append('    let path = path_member(path, "%s");' % f["json"])
            body.extend("    " + l for l in self.guid_walk(f["tree"], "value", 0))
            body.append("}")
        if body:
            w("    fn check_guids(&self, path: &str, errors: &mut Vec<DocumentError>) {")
            for l in body:
                w("        " + l)
            w("    }")
        else:
            w("    fn check_guids(&self, _path: &str, _errors: &mut Vec<DocumentError>) {}")
        w("}")
        w("")

    def guid_walk(self, tree, var, depth):
        """Lines checking the Guids inside `var` (a reference), whose path is in `path`."""
        kind = tree[0]
        if kind == "scalar":
            return ["check_guid(%s, &path, errors);" % var]
        if kind == "named":
            return ["%s.check_guids(&path, errors);" % var]
        if kind == "vec":
            item = "item%d" % depth
            idx = "index%d" % depth
            inner = self.guid_walk(tree[1], item, depth + 1)
            lines = ["for (%s, %s) in %s.iter().enumerate() {" % (idx, item, var),
                     "    let path = path_index(&path, %s);" % idx]
            lines += ["    " + l for l in inner]
            lines.append("}")
            return lines
        if kind == "map":
            key = "key%d" % depth
            item = "item%d" % depth
            lines = ["for (%s, %s) in %s {" % (key, item, var),
                     "    let path = path_member(&path, %s);" % key]
            if tree[1] == "Guid":
                lines.append("    crate::validate::check_guid_key(%s, &path, errors);" % key)
            if self.tree_has_guid(tree[2], self.guid_types):
                lines += ["    " + l for l in self.guid_walk(tree[2], item, depth + 1)]
            else:
                lines.append("    let _ = %s;" % item)
            lines.append("}")
            return lines
        return []

    def emit_shadows(self, w):
        w("// Deserialization of the objects goes through private mirrors (serde's `remote`")
        w("// derive), so that the public types get an `impl Deserialize` that accepts only a JSON")
        w("// object (serde's derive would also accept an array of the fields in order).")
        w("mod shadow {")
        w("    #![allow(dead_code)]")
        w("    use serde::de::{value::MapAccessDeserializer, MapAccess};")
        w("    use serde::Deserialize;")
        w("")
        w("    use super::*;")
        w("    use crate::strict::FromMap;")
        w("")
        for name in self.object_order:
            o = self.objects[name]
            rust = self.names[name]
            w("    #[derive(Deserialize)]")
            w('    #[serde(remote = "%s", deny_unknown_fields)]' % rust)
            if o["fields"]:
                w("    struct %sDef {" % rust)
                for f in o["fields"]:
                    w('        #[serde(rename = "%s", default)]' % f["json"])
                    w("        %s: %s," % (f["ident"], f["rust_type"]))
                w("    }")
            else:
                w("    struct %sDef {}" % rust)
            w("")
            w("    impl<'de> FromMap<'de> for %s {" % rust)
            w("        fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {")
            w("            %sDef::deserialize(MapAccessDeserializer::new(map))" % rust)
            w("        }")
            w("    }")
            w("")
        w("}")


def main():
    if len(sys.argv) not in (2, 3):
        die("usage: generate.py path/to/HCS-SCHEMA.md [output.rs]")
    src = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "src", "generated.rs")
    with open(src, encoding="utf-8") as fh:
        text = fh.read()
    enums, enum_order = parse_enums(section(text, 1))
    objects, object_order = parse_objects(section(text, 2))
    ext_enums = {}
    parse_extensions(section(text, 3), enums, objects, ext_enums)
    gen = Gen(enums, enum_order, objects, object_order, ext_enums)
    for schema, rust in sorted(gen.names.items()):
        if rust != camel(schema):
            sys.stderr.write("generate.py: %s is named %s (collision)\n" % (schema, rust))
    code = gen.emit()
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(code)
    rustfmt = shutil.which("rustfmt")
    if rustfmt:
        subprocess.run([rustfmt, "--edition", "2021", out], check=True)
    else:
        sys.stderr.write("generate.py: rustfmt not found; run `cargo fmt -p hcs-schema`\n")
    sys.stderr.write("generate.py: %d enums (+%d extension), %d object types -> %s\n" % (
        len(enum_order), len(ext_enums), len(object_order), os.path.relpath(out)))


if __name__ == "__main__":
    main()
