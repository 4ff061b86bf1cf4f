import Foundation

// Filters, as in Jinja 3.1, except `tojson`, which is transformers' version (json.dumps without
// HTML escaping, keys in insertion order, `indent` / `separators` / `sort_keys` / `ensure_ascii`).

typealias JinjaFilter = Builtin<JinjaValue, JinjaValue>

extension JinjaInterpreter {
    func applyFilter(_ name: String, _ value: JinjaValue, _ argumentExprs: JinjaArguments, _ frame: JinjaFrame,
                     line: Int) throws -> JinjaValue {
        try jinjaCheckFilter(name, line: line)
        return try filter(name, value, try evalArguments(argumentExprs, frame))
    }

    func filter(_ name: String, _ value: JinjaValue, _ arguments: JinjaCallArguments) throws -> JinjaValue {
        guard let filter = Self.filters[name] else { throw TemplateError("unknown filter '\(name)'", kind: .syntax) }
        return try filter.call(self, name, value, arguments)
    }

    static let filters: [String: JinjaFilter] = withAliases([
        "safe": JinjaFilter { $0.subject },
        "string": JinjaFilter { .string(try $0.str($0.subject)) },
        "trim": JinjaFilter(["chars"]) { .string(pythonStrip(try $0.str($0.subject), chars: try $0.string(0), left: true, right: true)) },
        "upper": JinjaFilter { .string(try $0.str($0.subject).uppercased()) },
        "lower": JinjaFilter { .string(try $0.str($0.subject).lowercased()) },
        "capitalize": JinjaFilter { .string(pythonCapitalize(try $0.str($0.subject))) },
        "title": JinjaFilter { .string(jinjaTitle(try $0.str($0.subject))) },
        "length": JinjaFilter { .int(try length($0.subject)) },
        "wordcount": JinjaFilter { .int(try $0.str($0.subject).split { !($0.isLetter || $0.isNumber || $0 == "_") }.count) },
        "default": JinjaFilter(["default_value", "boolean"]) { c in
            let useDefault = c.flag(1) ? !c.subject.truthy : c.subject.isUndefined
            return useDefault ? (c[0] ?? .string("")) : c.subject
        },
        "first": JinjaFilter { c in
            try c.interpreter.failIfUndefined(c.subject)
            return try c.subject.iterate().first ?? .undefined("No first item, sequence was empty.")
        },
        "last": JinjaFilter { c in
            try c.interpreter.failIfUndefined(c.subject)
            return try c.subject.iterate().last ?? .undefined("No last item, sequence was empty.")
        },
        "list": JinjaFilter { .array(try $0.subject.iterate()) },
        "reverse": JinjaFilter { c in
            if case .string(let s) = c.subject { return .string(String(s.unicodeScalars.reversed().map(Character.init))) }
            return .array(try c.subject.iterate().reversed())
        },
        "items": JinjaFilter { c in
            switch c.subject {
            case .undefined: return .array([])
            case .dict(let dict): return .array(try c.interpreter.items(dict))
            case .namespace(let ns): return .array(try c.interpreter.items(ns.attributes))
            default: throw TemplateError("can only get item pairs from a mapping, not \(c.subject.typeName)")
            }
        },
        "join": JinjaFilter(["d", "attribute"]) { c in
            var items = try c.subject.iterate()
            if let attribute = c[1] { items = try items.map { try c.interpreter.attributePath($0, attribute) } }
            let separator = try c[0].map(c.str) ?? ""
            var text = BoundedText(c.interpreter.budget)
            for (index, item) in items.enumerated() {
                if index > 0 { try text.append(separator) }
                try text.append(str: item)
            }
            return .string(text.text)
        },
        "replace": JinjaFilter(["old", "new", "count"]) { c in
            guard let old = c[0], let new = c[1] else { throw TemplateError("replace() needs old and new strings") }
            let count = c[2].flatMap { $0.isNone ? nil : $0.integer } ?? -1
            return .string(try c.interpreter.replace(try c.str(c.subject), try c.str(old), try c.str(new), count: count))
        },
        "tojson": JinjaFilter(["ensure_ascii", "indent", "separators", "sort_keys"]) { c in
            var options = JSONOptions()
            options.ensureASCII = c.flag(0)
            if let indent = c[1], !indent.isNone {
                if case .string(let s) = indent { options.indent = s } else if let n = indent.integer {
                    options.indent = try c.interpreter.spaces(n)
                }
            }
            if let separators = c[2], !separators.isNone {
                let parts = try separators.iterate()
                guard parts.count == 2 else { throw TemplateError("tojson separators must be a pair") }
                options.itemSeparator = try c.str(parts[0])
                options.keySeparator = try c.str(parts[1])
            }
            options.sortKeys = c.flag(3)
            return .string(try c.interpreter.json(c.subject, options))
        },
        "dictsort": JinjaFilter(["case_sensitive", "by", "reverse"]) { c in
            let byValue = try (c[1].map(c.str) ?? "key") == "value"
            guard case .dict(let dict) = c.subject else {
                throw TemplateError("dictsort() expects a mapping, got \(c.subject.typeName)")
            }
            var pairs = try c.interpreter.items(dict)
            try c.interpreter.sortValues(&pairs, reverse: c.flag(2)) { pair in
                guard case .array(let kv) = pair else { return pair }
                return try c.interpreter.sortKey(byValue ? kv[1] : kv[0], attribute: nil, caseSensitive: c.flag(0))
            }
            return .array(pairs)
        },
        "sort": JinjaFilter(["reverse", "case_sensitive", "attribute"]) { c in
            var items = try c.subject.iterate()
            try c.interpreter.sortValues(&items, reverse: c.flag(0)) {
                try c.interpreter.sortKey($0, attribute: c[2], caseSensitive: c.flag(1))
            }
            return .array(items)
        },
        "unique": JinjaFilter(["case_sensitive", "attribute"]) { c in
            // Keys Python can hash are looked up in a set; the others (lists...) compared one by one.
            var seenKeys: Set<JinjaKey> = []
            var seenOthers: [JinjaValue] = []
            var result: [JinjaValue] = []
            for item in try c.subject.iterate() {
                let key = try c.interpreter.sortKey(try c[1].map { try c.interpreter.attributePath(item, $0) } ?? item,
                                                    attribute: nil, caseSensitive: c.flag(0))
                let isNew: Bool
                if let hashable = JinjaKey(key) {
                    isNew = seenKeys.insert(hashable).inserted
                } else {
                    isNew = try !seenOthers.contains { try c.interpreter.equals($0, key) }
                    if isNew { seenOthers.append(key) }
                }
                if isNew { result.append(item) }
            }
            return .array(result)
        },
        "min": extremum(last: false),
        "max": extremum(last: true),
        "sum": JinjaFilter(["attribute", "start"]) { c in
            var total = c[1] ?? .int(0)
            for item in try c.subject.iterate() {
                total = try add(total, try c[0].map { try c.interpreter.attributePath(item, $0) } ?? item)
                try c.interpreter.budget.charge()
            }
            return total
        },
        "abs": JinjaFilter { c in
            if let i = c.subject.integer {
                guard i != .min else { throw TemplateError("integer overflow in abs()") }
                return .int(abs(i))
            }
            if case .double(let d) = c.subject { return .double(abs(d)) }
            throw TemplateError("bad operand type for abs(): '\(c.subject.typeName)'")
        },
        "round": JinjaFilter(["precision", "method"]) { c in
            let precision = c[0]?.integer ?? 0
            guard let number = c.subject.number else { throw TemplateError("round() needs a number") }
            let scale = pow(10.0, Double(precision))
            switch try c[1].map(c.str) ?? "common" {
            case "common":
                if let i = c.subject.integer, c[0] == nil { return .int(i) }
                return .double((number * scale).rounded(.toNearestOrEven) / scale)
            case "ceil": return .double((number * scale).rounded(.up) / scale)
            case "floor": return .double((number * scale).rounded(.down) / scale)
            default: throw TemplateError("method must be common, ceil or floor")
            }
        },
        // Jinja's int(): the string in `base`, else its float value truncated, else `default`.
        // Python has no overflow; here floats past Int's range are an error, and a base Python
        // rejects (not 2...36) falls back to the float reading, as Jinja's ValueError does.
        "int": JinjaFilter(["default", "base"]) { c in
            let fallback = c[0] ?? .int(0)
            func truncated(_ d: Double) throws -> JinjaValue {
                guard d.isFinite else { return fallback }
                guard let i = Int(exactly: d.rounded(.towardZero)) else {
                    throw TemplateError("int(): \(pythonFloatRepr(d)) does not fit a 64-bit integer")
                }
                return .int(i)
            }
            switch c.subject {
            case .int, .bool: return .int(c.subject.integer!)
            case .double(let d): return try truncated(d)
            case .string(let s):
                let text = pythonStrip(s, chars: nil, left: true, right: true).replacingOccurrences(of: "_", with: "")
                let base = c[1]?.integer ?? 10
                if (2...36).contains(base), let i = Int(text, radix: base) { return .int(i) }
                if let d = Double(text) { return try truncated(d) }
                return fallback
            default: return fallback
            }
        },
        "float": JinjaFilter(["default"]) { c in
            if let d = c.subject.number { return .double(d) }
            if case .string(let s) = c.subject, let d = Double(pythonStrip(s, chars: nil, left: true, right: true)) {
                return .double(d)
            }
            return c[0] ?? .double(0)
        },
        "indent": JinjaFilter(["width", "first", "blank"]) { c in
            let indentation: String
            if case .string(let s)? = c[0] { indentation = s } else {
                indentation = try c.interpreter.spaces(c[0]?.integer ?? 4)
            }
            let text = try c.str(c.subject)
            let lines = pythonSplitLines(text + "\n")
            let (added, overflow) = indentation.utf8.count.multipliedReportingOverflow(by: lines.count + 1)
            try c.interpreter.budget.checkBytes(overflow ? .max : text.utf8.count + added)
            var result: String
            if c.flag(2) {
                result = lines.joined(separator: "\n" + indentation)
            } else {
                result = lines.first ?? ""
                let rest = lines.dropFirst()
                if !rest.isEmpty {
                    result += "\n" + rest.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
                }
            }
            if c.flag(1) { result = indentation + result }
            return .string(result)
        },
        "escape": JinjaFilter { c in
            var out = ""
            for character in try c.str(c.subject) {
                switch character {
                case "&": out += "&amp;"
                case "<": out += "&lt;"
                case ">": out += "&gt;"
                case "\"": out += "&#34;"
                case "'": out += "&#39;"
                default: out.append(character)
                }
            }
            return .string(out)
        },
        "attr": JinjaFilter(["name"]) { c in
            guard case .namespace(let ns) = c.subject, let key = try c[0].map(c.str) else {
                return .undefined("attribute not found")
            }
            return ns.attributes[key] ?? .undefined("'Namespace object' has no attribute '\(key)'")
        },
        "map": JinjaFilter { c in
            // Jinja's map/select/reject treat a falsy sequence (none, undefined) as empty.
            let items = c.subject.truthy ? try c.subject.iterate() : []
            guard let first = c.arguments.positional.first else {
                var attribute: JinjaValue? = nil
                var defaultValue: JinjaValue? = nil
                for (key, argument) in c.arguments.keyword {
                    switch key {
                    case "attribute": attribute = argument
                    case "default": defaultValue = argument
                    default: throw TemplateError("map() got an unexpected keyword argument '\(key)'")
                    }
                }
                guard let attribute else { throw TemplateError("map() needs a filter name or attribute=") }
                return .array(try items.map { item in
                    let mapped = try c.interpreter.attributePath(item, attribute)
                    if mapped.isUndefined, let defaultValue { return defaultValue }
                    return mapped
                })
            }
            let filterName = try c.str(first)
            try jinjaCheckFilter(filterName, line: nil)
            let rest = JinjaCallArguments(positional: Array(c.arguments.positional.dropFirst()), keyword: c.arguments.keyword)
            return .array(try items.map { try c.interpreter.filter(filterName, $0, rest) })
        },
        "select": selection(byAttribute: false, keep: true),
        "reject": selection(byAttribute: false, keep: false),
        "selectattr": selection(byAttribute: true, keep: true),
        "rejectattr": selection(byAttribute: true, keep: false),
    ], ["d": "default", "e": "escape", "count": "length"])

    /// `min` / `max`: the first or last item in sorted order.
    private static func extremum(last: Bool) -> JinjaFilter {
        JinjaFilter(["case_sensitive", "attribute"]) { c in
            var items = try c.subject.iterate()
            guard !items.isEmpty else { return .undefined("No aggregated item, sequence was empty.") }
            try c.interpreter.sortValues(&items, reverse: false) {
                try c.interpreter.sortKey($0, attribute: c[1], caseSensitive: c.flag(0))
            }
            return last ? items.last! : items.first!
        }
    }

    /// `select` / `reject` (by a test on the item) and `selectattr` / `rejectattr` (on an attribute of it).
    private static func selection(byAttribute: Bool, keep: Bool) -> JinjaFilter {
        JinjaFilter { c in
            var positional = c.arguments.positional
            var attribute: JinjaValue? = nil
            if byAttribute {
                guard !positional.isEmpty else { throw TemplateError("\(c.name)() needs an attribute name") }
                attribute = positional.removeFirst()
            }
            let testName = positional.isEmpty ? nil : try c.str(positional.removeFirst())
            if let testName { try jinjaCheckTest(testName, line: nil) }
            let testArguments = JinjaCallArguments(positional: positional, keyword: c.arguments.keyword)
            return .array(try (c.subject.truthy ? c.subject.iterate() : []).filter { item in
                let subject = try attribute.map { try c.interpreter.attributePath(item, $0) } ?? item
                let passed = try testName.map { try c.interpreter.applyTest($0, subject, testArguments) } ?? subject.truthy
                return passed == keep
            })
        }
    }

    private static func length(_ value: JinjaValue) throws -> Int {
        switch value {
        case .undefined: return 0
        case .string(let s): return s.unicodeScalars.count
        case .array(let a): return a.count
        case .dict(let d): return d.count
        default: throw TemplateError("object of type '\(value.typeName)' has no len()")
        }
    }

    private static func add(_ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        if let x = a.integer, let y = b.integer {
            let (sum, overflow) = x.addingReportingOverflow(y)
            if overflow { throw TemplateError("integer overflow in sum()") }
            return .int(sum)
        }
        if let x = a.number, let y = b.number { return .double(x + y) }
        throw TemplateError("unsupported operand type(s) for +: '\(a.typeName)' and '\(b.typeName)'")
    }

    /// Jinja's `attribute=` argument: a dotted path, integer parts indexing lists.
    func attributePath(_ value: JinjaValue, _ path: JinjaValue) throws -> JinjaValue {
        if let i = path.integer { return try getItem(value, .int(i)) }
        var current = value
        for part in try str(path).split(separator: ".", omittingEmptySubsequences: false) {
            if let i = Int(part) {
                current = try getItem(current, .int(i))
            } else {
                current = try getItem(current, .string(String(part)))
            }
        }
        return current
    }

    /// What `sort`, `unique`, `min` and `max` order or compare `item` by: its `attribute` (none
    /// when missing), lower-cased unless `caseSensitive`.
    func sortKey(_ item: JinjaValue, attribute: JinjaValue?, caseSensitive: Bool) throws -> JinjaValue {
        let key = attribute.map { (try? attributePath(item, $0)) ?? .null } ?? item
        try budget.charge(RenderBudget.cost(of: key))
        if !caseSensitive, case .string(let s) = key { return .string(s.lowercased()) }
        return key
    }

    /// Stable sort by `key`, as Python's `sorted`.
    func sortValues(_ items: inout [JinjaValue], reverse: Bool, key: (JinjaValue) throws -> JinjaValue) throws {
        let keyed = try items.enumerated().map { ($0.offset, try key($0.element), $0.element) }
        items = try keyed.sorted { a, b in
            let order = try compare(a.1, b.1)
            return order != 0 ? (reverse ? order > 0 : order < 0) : a.0 < b.0
        }.map(\.2)
    }

    /// `dict.items()`: [key, value] lists, which nest two levels deeper than the values.
    func items(_ dict: JinjaDict) throws -> [JinjaValue] {
        let pairs = dict.items
        try budget.checkNesting(of: pairs)
        return pairs
    }

    /// `count` spaces (none for count <= 0), within the string limit.
    func spaces(_ count: Int) throws -> String {
        try budget.checkBytes(count)
        return String(repeating: " ", count: max(0, count))
    }

    /// `s.replace(old, new, count)`, within the string limit.
    func replace(_ s: String, _ old: String, _ new: String, count: Int) throws -> String {
        let growth = new.utf8.count - old.utf8.count
        return try pythonReplace(s, old, new, count: count) { replacements in
            guard growth > 0 else { return }
            let (added, overflow) = replacements.multipliedReportingOverflow(by: growth)
            try budget.checkBytes(overflow ? .max : s.utf8.count + added)
        }
    }
}
