// Python methods of str, list and dict that templates call (`s.strip()`, `d.items()`...), and
// `loop.cycle`. Lists and dicts are immutable here, as in Jinja's sandbox.

typealias JinjaMethod<Subject> = Builtin<Subject, JinjaValue>

extension JinjaInterpreter {
    /// `object.name(arguments)` when `object` has such a method; nil when it has none.
    func callMethod(_ object: JinjaValue, _ name: String, _ arguments: JinjaCallArguments) throws -> JinjaValue? {
        switch object {
        case .string(let s): return try Self.stringMethods[name]?.call(self, name, s, arguments)
        case .array(let items): return try Self.listMethods[name]?.call(self, name, items, arguments)
        case .dict(let dict) where name != "cycle" || dict.isLoop:
            return try Self.dictMethods[name]?.call(self, name, dict, arguments)
        default: return nil
        }
    }

    static let stringMethods: [String: JinjaMethod<String>] = [
        "strip": strip(left: true, right: true),
        "lstrip": strip(left: true, right: false),
        "rstrip": strip(left: false, right: true),
        "split": split(fromRight: false),
        "rsplit": split(fromRight: true),
        "splitlines": JinjaMethod { .array(pythonSplitLines($0.subject).map { .string($0) }) },
        "upper": JinjaMethod { .string($0.subject.uppercased()) },
        "lower": JinjaMethod { .string($0.subject.lowercased()) },
        "title": JinjaMethod { .string(pythonTitle($0.subject)) },
        "capitalize": JinjaMethod { .string(pythonCapitalize($0.subject)) },
        "startswith": affix { $0.starts(with: $1) },
        "endswith": affix { $0.reversed().starts(with: $1.reversed()) },
        "replace": JinjaMethod(["old", "new", "count"]) { c in
            guard let old = c[0], let new = c[1] else { throw TemplateError("replace() takes at least 2 arguments") }
            return .string(try c.interpreter.replace(c.subject, try c.str(old), try c.str(new), count: c[2]?.integer ?? -1))
        },
        "find": search { .int($0.first ?? -1) },
        "rfind": search { .int($0.last ?? -1) },
        "count": search { .int($0.count) },
        "index": search { try found($0.first) },
        "rindex": search { try found($0.last) },
        "join": JinjaMethod(["iterable"]) { c in
            var text = BoundedText(c.interpreter.budget)
            for (index, item) in try (c[0] ?? .array([])).iterate().enumerated() {
                guard case .string(let piece) = item else {
                    throw TemplateError("sequence item \(index): expected str instance, \(item.typeName) found")
                }
                if index > 0 { try text.append(c.subject) }
                try text.append(piece)
            }
            return .string(text.text)
        },
        "format": JinjaMethod { .string(try pythonFormat($0.subject, $0.arguments, budget: $0.interpreter.budget)) },
        "isdigit": characters { $0.isNumber },
        "isalpha": characters { $0.isLetter },
        "isalnum": characters { $0.isLetter || $0.isNumber },
        "isspace": JinjaMethod { c in .bool(!c.subject.isEmpty && c.subject.unicodeScalars.allSatisfy(isPythonWhitespace)) },
        "isupper": JinjaMethod { c in .bool(c.subject.contains { $0.isCased } && c.subject == c.subject.uppercased()) },
        "islower": JinjaMethod { c in .bool(c.subject.contains { $0.isCased } && c.subject == c.subject.lowercased()) },
    ]

    static let listMethods: [String: JinjaMethod<[JinjaValue]>] = [
        "index": JinjaMethod(["value"]) { c in
            guard let found = try c.subject.firstIndex(where: { try c.interpreter.equals($0, c[0] ?? .null) }) else {
                throw TemplateError("value is not in list")
            }
            return .int(found)
        },
        "count": JinjaMethod(["value"]) { c in .int(try c.subject.filter { try c.interpreter.equals($0, c[0] ?? .null) }.count) },
    ].merging(forbidden("list", ["append", "pop", "extend", "insert", "remove", "sort", "reverse", "clear"])) { $1 }

    static let dictMethods: [String: JinjaMethod<JinjaDict>] = [
        "items": JinjaMethod { .array(try $0.interpreter.items($0.subject)) },
        "keys": JinjaMethod { .array($0.subject.keys.map(\.value)) },
        "values": JinjaMethod { .array($0.subject.values) },
        "get": JinjaMethod(["key", "default"]) { c in
            guard let key = c[0].flatMap(JinjaKey.init) else { return c[1] ?? .null }
            return c.subject[key] ?? c[1] ?? .null
        },
        // `loop.cycle(a, b, ...)`; `callMethod` offers it on loop objects only, which a template
        // can imitate with a dict of its own.
        "cycle": JinjaMethod { c in
            let items = c.arguments.positional
            guard !items.isEmpty else { throw TemplateError("no items for cycling given") }
            guard let index = c.subject["index0"]?.integer else { throw TemplateError("loop.index0 is not an integer") }
            let position = index % items.count
            return items[position < 0 ? position + items.count : position]
        },
    ].merging(forbidden("dict", ["pop", "update", "setdefault", "clear", "popitem"])) { $1 }

    /// Methods that would modify a list or dict: errors, as in Jinja's immutable sandbox.
    private static func forbidden<Subject>(_ type: String, _ names: [String]) -> [String: JinjaMethod<Subject>] {
        Dictionary(uniqueKeysWithValues: names.map { name in
            (name, JinjaMethod { _ in
                throw TemplateError("the template tried to modify a \(type) with '\(name)', which the immutable "
                                    + "sandbox forbids")
            })
        })
    }

    private static func strip(left: Bool, right: Bool) -> JinjaMethod<String> {
        JinjaMethod(["chars"]) { .string(pythonStrip($0.subject, chars: try $0.string(0), left: left, right: right)) }
    }

    private static func split(fromRight: Bool) -> JinjaMethod<String> {
        JinjaMethod(["sep", "maxsplit"]) { c in
            let separator = try c.string(0)
            if separator == "" { throw TemplateError("empty separator") }
            let parts = pythonSplit(c.subject, separator: separator, maxSplit: c[1]?.integer ?? -1, fromRight: fromRight)
            return .array(parts.map { .string($0) })
        }
    }

    /// `startswith` / `endswith`, with one affix or a tuple of them.
    private static func affix(_ matches: @escaping @Sendable ([Unicode.Scalar], [Unicode.Scalar]) -> Bool)
        -> JinjaMethod<String> {
        JinjaMethod(["prefix"]) { c in
            guard let affix = c[0] else { throw TemplateError("\(c.name)() takes at least 1 argument") }
            let candidates: [JinjaValue]
            if case .array(let items) = affix { candidates = items } else { candidates = [affix] }
            return .bool(try candidates.contains { candidate in
                guard case .string(let text) = candidate else {
                    throw TemplateError("\(c.name) first arg must be str or a tuple of str")
                }
                return matches(Array(c.subject.unicodeScalars), Array(text.unicodeScalars))
            })
        }
    }

    /// `find`, `count`, `index`...: `result` of the code-point offsets where the argument occurs
    /// (not overlapping; an empty argument at every offset, the end included, as in Python).
    private static func search(_ result: @escaping @Sendable ([Int]) throws -> JinjaValue) -> JinjaMethod<String> {
        JinjaMethod(["sub"]) { c in
            guard case .string(let needle)? = c[0] else { throw TemplateError("\(c.name)() needs a string") }
            let hay = Array(c.subject.unicodeScalars), sub = Array(needle.unicodeScalars)
            return try result(sub.isEmpty ? Array(0...hay.count) : pythonOccurrences(of: sub, in: hay))
        }
    }

    private static func found(_ position: Int?) throws -> JinjaValue {
        guard let position else { throw TemplateError("substring not found") }
        return .int(position)
    }

    /// `isdigit`, `isalpha`, `isalnum`: true for a non-empty string whose characters all match.
    private static func characters(_ matches: @escaping @Sendable (Character) -> Bool) -> JinjaMethod<String> {
        JinjaMethod { c in .bool(!c.subject.isEmpty && c.subject.allSatisfy(matches)) }
    }
}

extension JinjaDict {
    /// Whether this is a `loop` object (the only dicts with a `cycle` method).
    var isLoop: Bool { self["index0"] != nil && self["revindex0"] != nil }
}
