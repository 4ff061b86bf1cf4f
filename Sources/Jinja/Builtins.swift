import Foundation

// Filters, tests and Python methods (`str.strip()`, `dict.items()`...) of the Jinja interpreter.
// Semantics follow Jinja 3.1's builtins, except `tojson`, which is transformers' version
// (json.dumps without HTML escaping, keys in insertion order, `indent` / `separators` /
// `sort_keys` / `ensure_ascii` options).

extension JinjaInterpreter {
    // MARK: - Filters

    func applyFilter(_ name: String, _ value: JinjaValue, _ argumentExprs: JinjaArguments, _ frame: JinjaFrame,
                     line: Int) throws -> JinjaValue {
        try jinjaCheckFilter(name, line: line)
        let arguments = Arguments(positional: try argumentExprs.positional.map { try eval($0, frame) },
                                  keyword: try argumentExprs.keyword.map { ($0.0, try eval($0.1, frame)) })
        return try filter(name, value, arguments)
    }

    func filter(_ name: String, _ value: JinjaValue, _ arguments: Arguments) throws -> JinjaValue {
        func bind(_ parameters: [String]) throws -> [JinjaValue?] { try arguments.bind(name, parameters) }
        switch name {
        case "safe":
            return value
        case "string":
            return .string(value.str)
        case "trim":
            let a = try bind(["chars"])
            return .string(pythonStrip(value.str, chars: try optionalString(a[0]), left: true, right: true))
        case "upper":
            return .string(value.str.uppercased())
        case "lower":
            return .string(value.str.lowercased())
        case "capitalize":
            return .string(pythonCapitalize(value.str))
        case "title":
            return .string(jinjaTitle(value.str))
        case "length", "count":
            return .int(try length(value))
        case "wordcount":
            return .int(value.str.split { !($0.isLetter || $0.isNumber || $0 == "_") }.count)
        case "default", "d":
            let a = try bind(["default_value", "boolean"])
            let useDefault = (a[1]?.truthy ?? false) ? !value.truthy : value.isUndefined
            return useDefault ? (a[0] ?? .string("")) : value
        case "first":
            try failIfUndefined(value)
            return try value.iterate().first ?? .undefined("No first item, sequence was empty.")
        case "last":
            try failIfUndefined(value)
            return try value.iterate().last ?? .undefined("No last item, sequence was empty.")
        case "list":
            return .array(try value.iterate())
        case "reverse":
            if case .string(let s) = value { return .string(String(s.unicodeScalars.reversed().map(Character.init))) }
            return .array(try value.iterate().reversed())
        case "items":
            switch value {
            case .undefined: return .array([])
            case .dict(let dict): return .array(dict.items)
            case .namespace(let ns): return .array(ns.attributes.items)
            default: throw TemplateError("can only get item pairs from a mapping, not \(value.typeName)")
            }
        case "join":
            let a = try bind(["d", "attribute"])
            var items = try value.iterate()
            if let attribute = a[1] { items = try items.map { try attributePath($0, attribute) } }
            return .string(items.map(\.str).joined(separator: a[0]?.str ?? ""))
        case "replace":
            let a = try bind(["old", "new", "count"])
            guard let old = a[0], let new = a[1] else { throw TemplateError("replace() needs old and new strings") }
            let count = a[2].flatMap { $0.isNone ? nil : $0.integer } ?? -1
            return .string(pythonReplace(value.str, old.str, new.str, count: count))
        case "tojson":
            let a = try bind(["ensure_ascii", "indent", "separators", "sort_keys"])
            var options = JSONOptions()
            options.ensureASCII = a[0]?.truthy ?? false
            if let indent = a[1], !indent.isNone {
                if case .string(let s) = indent { options.indent = s } else if let n = indent.integer {
                    options.indent = String(repeating: " ", count: max(0, n))
                }
            }
            if let separators = a[2], !separators.isNone {
                let parts = try separators.iterate()
                guard parts.count == 2 else { throw TemplateError("tojson separators must be a pair") }
                options.itemSeparator = parts[0].str
                options.keySeparator = parts[1].str
            }
            options.sortKeys = a[3]?.truthy ?? false
            return .string(try pythonJSON(value, options))
        case "dictsort":
            let a = try bind(["case_sensitive", "by", "reverse"])
            let caseSensitive = a[0]?.truthy ?? false
            let byValue = (a[1]?.str ?? "key") == "value"
            guard case .dict(let dict) = value else {
                throw TemplateError("dictsort() expects a mapping, got \(value.typeName)")
            }
            var pairs = dict.items
            try sortValues(&pairs, reverse: a[2]?.truthy ?? false) { pair in
                guard case .array(let kv) = pair else { return pair }
                return sortKey(byValue ? kv[1] : kv[0], caseSensitive: caseSensitive)
            }
            return .array(pairs)
        case "sort":
            let a = try bind(["reverse", "case_sensitive", "attribute"])
            var items = try value.iterate()
            let caseSensitive = a[1]?.truthy ?? false
            try sortValues(&items, reverse: a[0]?.truthy ?? false) { item in
                sortKey(a[2].map { (try? self.attributePath(item, $0)) ?? .null } ?? item, caseSensitive: caseSensitive)
            }
            return .array(items)
        case "unique":
            let a = try bind(["case_sensitive", "attribute"])
            var seen: [JinjaValue] = []
            var result: [JinjaValue] = []
            for item in try value.iterate() {
                let key = sortKey(try a[1].map { try attributePath(item, $0) } ?? item, caseSensitive: a[0]?.truthy ?? false)
                if !seen.contains(where: { jinjaEquals($0, key) }) {
                    seen.append(key)
                    result.append(item)
                }
            }
            return .array(result)
        case "min", "max":
            let a = try bind(["case_sensitive", "attribute"])
            var items = try value.iterate()
            guard !items.isEmpty else { return .undefined("No aggregated item, sequence was empty.") }
            let caseSensitive = a[0]?.truthy ?? false
            try sortValues(&items, reverse: false) { item in
                sortKey(a[1].map { (try? self.attributePath(item, $0)) ?? .null } ?? item, caseSensitive: caseSensitive)
            }
            return name == "min" ? items.first! : items.last!
        case "sum":
            let a = try bind(["attribute", "start"])
            var total = a[1] ?? .int(0)
            for item in try value.iterate() {
                total = try filterAdd(total, try a[0].map { try attributePath(item, $0) } ?? item)
            }
            return total
        case "abs":
            if let i = value.integer { return .int(abs(i)) }
            if case .double(let d) = value { return .double(abs(d)) }
            throw TemplateError("bad operand type for abs(): '\(value.typeName)'")
        case "round":
            let a = try bind(["precision", "method"])
            let precision = a[0]?.integer ?? 0
            let method = a[1]?.str ?? "common"
            guard let number = value.number else { throw TemplateError("round() needs a number") }
            let scale = pow(10.0, Double(precision))
            switch method {
            case "common":
                if value.integer != nil && a[0] == nil { return .int(value.integer!) }
                return .double((number * scale).rounded(.toNearestOrEven) / scale)
            case "ceil": return .double((number * scale).rounded(.up) / scale)
            case "floor": return .double((number * scale).rounded(.down) / scale)
            default: throw TemplateError("method must be common, ceil or floor")
            }
        case "int":
            let a = try bind(["default", "base"])
            let fallback = a[0] ?? .int(0)
            switch value {
            case .int, .bool: return .int(value.integer!)
            case .double(let d): return d.isFinite ? .int(Int(d.rounded(.towardZero))) : fallback
            case .string(let s):
                let text = pythonStrip(s, chars: nil, left: true, right: true).replacingOccurrences(of: "_", with: "")
                if let i = Int(text, radix: a[1]?.integer ?? 10) { return .int(i) }
                if let d = Double(text), d.isFinite { return .int(Int(d.rounded(.towardZero))) }
                return fallback
            default: return fallback
            }
        case "float":
            let a = try bind(["default"])
            if let d = value.number { return .double(d) }
            if case .string(let s) = value, let d = Double(pythonStrip(s, chars: nil, left: true, right: true)) {
                return .double(d)
            }
            return a[0] ?? .double(0)
        case "indent":
            let a = try bind(["width", "first", "blank"])
            let indentation: String
            if case .string(let s)? = a[0] { indentation = s } else {
                indentation = String(repeating: " ", count: a[0]?.integer ?? 4)
            }
            let lines = pythonSplitLines(value.str + "\n")
            var result: String
            if a[2]?.truthy ?? false {
                result = lines.joined(separator: "\n" + indentation)
            } else {
                result = lines.first ?? ""
                let rest = lines.dropFirst()
                if !rest.isEmpty {
                    result += "\n" + rest.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
                }
            }
            if a[1]?.truthy ?? false { result = indentation + result }
            return .string(result)
        case "escape", "e":
            var out = ""
            for c in value.str {
                switch c {
                case "&": out += "&amp;"
                case "<": out += "&lt;"
                case ">": out += "&gt;"
                case "\"": out += "&#34;"
                case "'": out += "&#39;"
                default: out.append(c)
                }
            }
            return .string(out)
        case "attr":
            let a = try bind(["name"])
            guard case .namespace(let ns) = value, let key = a[0]?.str else {
                return .undefined("attribute not found")
            }
            return ns.attributes[key] ?? .undefined("'Namespace object' has no attribute '\(key)'")
        case "map":
            // Jinja's map/select/reject treat a falsy sequence (none, undefined) as empty.
            let items = value.truthy ? try value.iterate() : []
            if arguments.positional.isEmpty {
                var attribute: JinjaValue? = nil
                var defaultValue: JinjaValue? = nil
                for (key, argument) in arguments.keyword {
                    switch key {
                    case "attribute": attribute = argument
                    case "default": defaultValue = argument
                    default: throw TemplateError("map() got an unexpected keyword argument '\(key)'")
                    }
                }
                guard let attribute else { throw TemplateError("map() needs a filter name or attribute=") }
                return .array(try items.map { item in
                    let mapped = try attributePath(item, attribute)
                    if mapped.isUndefined, let defaultValue { return defaultValue }
                    return mapped
                })
            }
            let filterName = arguments.positional[0].str
            try jinjaCheckFilter(filterName, line: nil)
            let rest = Arguments(positional: Array(arguments.positional.dropFirst()), keyword: arguments.keyword)
            return .array(try items.map { try filter(filterName, $0, rest) })
        case "select", "reject", "selectattr", "rejectattr":
            let byAttribute = name.hasSuffix("attr")
            let keep = name.hasPrefix("select")
            var positional = arguments.positional
            var attribute: JinjaValue? = nil
            if byAttribute {
                guard !positional.isEmpty else { throw TemplateError("\(name)() needs an attribute name") }
                attribute = positional.removeFirst()
            }
            let testName = positional.isEmpty ? nil : positional.removeFirst().str
            if let testName { try jinjaCheckTest(testName, line: nil) }
            let testArguments = Arguments(positional: positional, keyword: arguments.keyword)
            return .array(try (value.truthy ? value.iterate() : []).filter { item in
                let subject = try attribute.map { try attributePath(item, $0) } ?? item
                let passed = try testName.map { try applyTest($0, subject, testArguments) } ?? subject.truthy
                return passed == keep
            })
        default:
            throw TemplateError("unknown filter '\(name)'", kind: .syntax)
        }
    }

    private func optionalString(_ value: JinjaValue?) throws -> String? {
        guard let value, !value.isNone else { return nil }
        return value.str
    }

    private func length(_ value: JinjaValue) throws -> Int {
        switch value {
        case .undefined: return 0
        case .string(let s): return s.unicodeScalars.count
        case .array(let a): return a.count
        case .dict(let d): return d.count
        default: throw TemplateError("object of type '\(value.typeName)' has no len()")
        }
    }

    private func filterAdd(_ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        if let x = a.integer, let y = b.integer { return .int(x + y) }
        if let x = a.number, let y = b.number { return .double(x + y) }
        throw TemplateError("unsupported operand type(s) for +: '\(a.typeName)' and '\(b.typeName)'")
    }

    /// Jinja's `attribute=` argument: a dotted path, integer parts indexing lists.
    func attributePath(_ value: JinjaValue, _ path: JinjaValue) throws -> JinjaValue {
        if let i = path.integer { return try getItem(value, .int(i)) }
        var current = value
        for part in path.str.split(separator: ".", omittingEmptySubsequences: false) {
            if let i = Int(part) {
                current = try getItem(current, .int(i))
            } else {
                current = try getItem(current, .string(String(part)))
            }
        }
        return current
    }

    private func sortKey(_ value: JinjaValue, caseSensitive: Bool) -> JinjaValue {
        if !caseSensitive, case .string(let s) = value { return .string(s.lowercased()) }
        return value
    }

    /// Stable sort by `key`, as Python's `sorted`.
    private func sortValues(_ items: inout [JinjaValue], reverse: Bool, key: (JinjaValue) throws -> JinjaValue) throws {
        let keyed = try items.enumerated().map { ($0.offset, try key($0.element), $0.element) }
        var failure: Error? = nil
        let sorted = keyed.sorted { a, b in
            do {
                let order = try jinjaCompare(a.1, b.1)
                if order != 0 { return reverse ? order > 0 : order < 0 }
            } catch {
                failure = error
            }
            return a.0 < b.0
        }
        if let failure { throw failure }
        items = sorted.map(\.2)
    }

    // MARK: - Tests

    func applyTest(_ name: String, _ value: JinjaValue, _ arguments: Arguments) throws -> Bool {
        func argument() throws -> JinjaValue {
            guard let first = arguments.positional.first ?? arguments.keyword.first?.1 else {
                throw TemplateError("the '\(name)' test needs an argument")
            }
            return first
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": return value.isNone
        case "string":
            if case .string = value { return true }
            return false
        case "number":
            switch value {
            case .int, .double, .bool: return true
            default: return false
            }
        case "integer":
            if case .int = value { return true }
            return false
        case "float":
            if case .double = value { return true }
            return false
        case "boolean":
            if case .bool = value { return true }
            return false
        case "true":
            if case .bool(true) = value { return true }
            return false
        case "false":
            if case .bool(false) = value { return true }
            return false
        case "mapping":
            if case .dict = value { return true }
            return false
        case "iterable":
            switch value {
            case .undefined, .string, .array, .dict: return true
            default: return false
            }
        case "sequence":
            switch value {
            case .undefined, .string, .array, .dict: return true
            default: return false
            }
        case "callable":
            switch value {
            case .macro, .builtin: return true
            default: return false
            }
        case "odd", "even":
            guard let i = value.integer else { throw TemplateError("the '\(name)' test needs an integer") }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard let i = value.integer, let n = try argument().integer, n != 0 else {
                throw TemplateError("divisibleby needs integers")
            }
            return i % n == 0
        case "eq", "equalto", "==": return jinjaEquals(value, try argument())
        case "ne", "!=": return !jinjaEquals(value, try argument())
        case "lt", "lessthan", "<": return try jinjaCompare(value, try argument()) < 0
        case "le", "<=": return try jinjaCompare(value, try argument()) <= 0
        case "gt", "greaterthan", ">": return try jinjaCompare(value, try argument()) > 0
        case "ge", ">=": return try jinjaCompare(value, try argument()) >= 0
        case "in": return try contains(try argument(), value)
        case "lower":
            let s = value.str
            return s.contains { $0.isCased } && s == s.lowercased()
        case "upper":
            let s = value.str
            return s.contains { $0.isCased } && s == s.uppercased()
        case "sameas":
            let other = try argument()
            switch (value, other) {
            case (.null, .null): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            case (.int(let a), .int(let b)): return a == b
            default: return false
            }
        case "filter": return jinjaSupportedFilters.contains(value.str)
        case "test": return jinjaSupportedTests.contains(value.str)
        default:
            throw TemplateError("unknown test '\(name)'", kind: .syntax)
        }
    }

    // MARK: - Methods

    /// Python methods of str, dict and list (and `loop.cycle`); nil when `object` has no such method.
    func callMethod(_ object: JinjaValue, _ name: String, _ arguments: Arguments) throws -> JinjaValue? {
        func bind(_ parameters: [String]) throws -> [JinjaValue?] { try arguments.bind(name, parameters) }
        switch object {
        case .string(let s):
            switch name {
            case "strip", "lstrip", "rstrip":
                let a = try bind(["chars"])
                return .string(pythonStrip(s, chars: try optionalString(a[0]), left: name != "rstrip", right: name != "lstrip"))
            case "split", "rsplit":
                let a = try bind(["sep", "maxsplit"])
                let separator = try optionalString(a[0])
                if separator == "" { throw TemplateError("empty separator") }
                let parts = pythonSplit(s, separator: separator, maxSplit: a[1]?.integer ?? -1, fromRight: name == "rsplit")
                return .array(parts.map { .string($0) })
            case "splitlines":
                return .array(pythonSplitLines(s).map { .string($0) })
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(pythonTitle(s))
            case "capitalize": return .string(pythonCapitalize(s))
            case "startswith", "endswith":
                let a = try bind(["prefix"])
                guard let affix = a[0] else { throw TemplateError("\(name)() takes at least 1 argument") }
                let candidates: [JinjaValue]
                if case .array(let items) = affix { candidates = items } else { candidates = [affix] }
                return .bool(try candidates.contains { candidate in
                    guard case .string(let c) = candidate else {
                        throw TemplateError("\(name) first arg must be str or a tuple of str")
                    }
                    let scalars = Array(s.unicodeScalars), affixScalars = Array(c.unicodeScalars)
                    return name == "startswith" ? scalars.starts(with: affixScalars)
                        : scalars.reversed().starts(with: affixScalars.reversed())
                })
            case "replace":
                let a = try bind(["old", "new", "count"])
                guard let old = a[0], let new = a[1] else { throw TemplateError("replace() takes at least 2 arguments") }
                return .string(pythonReplace(s, old.str, new.str, count: a[2]?.integer ?? -1))
            case "find", "rfind", "count", "index", "rindex":
                let a = try bind(["sub"])
                guard case .string(let needle)? = a[0] else { throw TemplateError("\(name)() needs a string") }
                let hay = Array(s.unicodeScalars), sub = Array(needle.unicodeScalars)
                var positions: [Int] = []
                var i = 0
                while i + sub.count <= hay.count {
                    if Array(hay[i..<i + sub.count]) == sub {
                        positions.append(i)
                        i += max(sub.count, 1)
                    } else {
                        i += 1
                    }
                }
                if sub.isEmpty { positions.append(hay.count) }
                switch name {
                case "count": return .int(positions.count)
                case "find": return .int(positions.first ?? -1)
                case "rfind": return .int(positions.last ?? -1)
                default:
                    guard let found = name == "index" ? positions.first : positions.last else {
                        throw TemplateError("substring not found")
                    }
                    return .int(found)
                }
            case "join":
                let a = try bind(["iterable"])
                let items = try (a[0] ?? .array([])).iterate()
                return .string(try items.map { item -> String in
                    guard case .string(let text) = item else {
                        throw TemplateError("sequence item: expected str instance, \(item.typeName) found")
                    }
                    return text
                }.joined(separator: s))
            case "format":
                return .string(try pythonFormat(s, arguments))
            case "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower":
                let chars = Array(s)
                guard !chars.isEmpty else { return .bool(false) }
                switch name {
                case "isdigit": return .bool(chars.allSatisfy { $0.isNumber })
                case "isalpha": return .bool(chars.allSatisfy { $0.isLetter })
                case "isalnum": return .bool(chars.allSatisfy { $0.isLetter || $0.isNumber })
                case "isspace": return .bool(s.unicodeScalars.allSatisfy(isPythonWhitespace))
                case "isupper": return .bool(chars.contains { $0.isCased } && s == s.uppercased())
                default: return .bool(chars.contains { $0.isCased } && s == s.lowercased())
                }
            default: return nil
            }
        case .dict(let dict):
            switch name {
            case "items": return .array(dict.items)
            case "keys": return .array(dict.keys.map(\.value))
            case "values": return .array(dict.values)
            case "get":
                let a = try bind(["key", "default"])
                guard let key = a[0].flatMap(JinjaKey.init) else { return a[1] ?? .null }
                return dict[key] ?? a[1] ?? .null
            case "cycle" where dict["index0"] != nil && dict["revindex0"] != nil:
                guard !arguments.positional.isEmpty else { throw TemplateError("no items for cycling given") }
                let index = dict["index0"]!.integer!
                return arguments.positional[index % arguments.positional.count]
            case "pop", "update", "setdefault", "clear", "popitem":
                throw TemplateError("the template tried to modify a dict with '\(name)', which the immutable "
                                       + "sandbox forbids", kind: .render)
            default: return nil
            }
        case .array(let items):
            switch name {
            case "index":
                let a = try bind(["value"])
                guard let found = items.firstIndex(where: { jinjaEquals($0, a[0] ?? .null) }) else {
                    throw TemplateError("value is not in list")
                }
                return .int(found)
            case "count":
                let a = try bind(["value"])
                return .int(items.filter { jinjaEquals($0, a[0] ?? .null) }.count)
            case "append", "pop", "extend", "insert", "remove", "sort", "reverse", "clear":
                throw TemplateError("the template tried to modify a list with '\(name)', which the immutable "
                                       + "sandbox forbids", kind: .render)
            default: return nil
            }
        default:
            return nil
        }
    }
}

// MARK: - Python string helpers

/// `str.strip(chars)`: whitespace when `chars` is nil, else any of its characters.
func pythonStrip(_ s: String, chars: String?, left: Bool, right: Bool) -> String {
    let scalars = Array(s.unicodeScalars)
    let set = chars.map { Set($0.unicodeScalars) }
    func strippable(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isPythonWhitespace(c) }
    var start = 0, end = scalars.count
    if left { while start < end && strippable(scalars[start]) { start += 1 } }
    if right { while end > start && strippable(scalars[end - 1]) { end -= 1 } }
    var out = String.UnicodeScalarView()
    out.append(contentsOf: scalars[start..<end])
    return String(out)
}

/// `str.split(sep, maxsplit)` / `str.rsplit(sep, maxsplit)`.
func pythonSplit(_ s: String, separator: String?, maxSplit: Int, fromRight: Bool) -> [String] {
    var scalars = Array(s.unicodeScalars)
    var sep = separator.map { Array($0.unicodeScalars) }
    if fromRight {
        scalars.reverse()
        sep?.reverse()
    }
    func string(_ part: ArraySlice<Unicode.Scalar>) -> String {
        var out = String.UnicodeScalarView()
        out.append(contentsOf: fromRight ? Array(part.reversed()) : Array(part))
        return String(out)
    }
    var parts: [String] = []
    var splits = 0
    if let sep {
        var start = 0, i = 0
        while i + sep.count <= scalars.count {
            if maxSplit >= 0 && splits >= maxSplit { break }
            if Array(scalars[i..<i + sep.count]) == sep {
                parts.append(string(scalars[start..<i]))
                i += sep.count
                start = i
                splits += 1
            } else {
                i += 1
            }
        }
        parts.append(string(scalars[start...]))
    } else {
        var i = 0
        while true {
            while i < scalars.count && isPythonWhitespace(scalars[i]) { i += 1 }
            if i >= scalars.count { break }
            if maxSplit >= 0 && splits >= maxSplit {
                // The rest, with its trailing whitespace kept (as Python does).
                parts.append(string(scalars[i...]))
                break
            }
            let start = i
            while i < scalars.count && !isPythonWhitespace(scalars[i]) { i += 1 }
            parts.append(string(scalars[start..<i]))
            splits += 1
        }
    }
    return fromRight ? parts.reversed() : parts
}

/// `str.splitlines()`.
func pythonSplitLines(_ s: String) -> [String] {
    let breaks: Set<UInt32> = [0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029]
    var lines: [String] = []
    var current = String.UnicodeScalarView()
    var previousCR = false
    for c in s.unicodeScalars {
        if previousCR && c == "\n" {
            previousCR = false
            continue
        }
        previousCR = false
        if breaks.contains(c.value) {
            lines.append(String(current))
            current = String.UnicodeScalarView()
            previousCR = c == "\r"
        } else {
            current.append(c)
        }
    }
    if !current.isEmpty { lines.append(String(current)) }
    return lines
}

func pythonReplace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
    if count < 0 { return old.isEmpty ? pythonReplaceEmpty(s, new, count: count) : s.replacingOccurrences(of: old, with: new) }
    if old.isEmpty { return pythonReplaceEmpty(s, new, count: count) }
    var result = ""
    var rest = Substring(s)
    var done = 0
    while done < count, let range = rest.range(of: old) {
        result += rest[..<range.lowerBound] + new
        rest = rest[range.upperBound...]
        done += 1
    }
    return result + rest
}

/// `"ab".replace("", "-")` is "-a-b-".
private func pythonReplaceEmpty(_ s: String, _ new: String, count: Int) -> String {
    var result = ""
    var done = 0
    for c in s.unicodeScalars {
        if count < 0 || done < count {
            result += new
            done += 1
        }
        result.unicodeScalars.append(c)
    }
    if count < 0 || done < count { result += new }
    return result
}

func pythonCapitalize(_ s: String) -> String {
    guard let first = s.first else { return s }
    return String(first).uppercased() + s.dropFirst().lowercased()
}

/// `str.title()`: a letter after a non-letter is upper-cased, other letters lower-cased.
func pythonTitle(_ s: String) -> String {
    var out = ""
    var previousCased = false
    for c in s {
        out += previousCased ? c.lowercased() : c.uppercased()
        previousCased = c.isCased
    }
    return out
}

/// Jinja's `title` filter: words start after whitespace or one of `-({[<`.
func jinjaTitle(_ s: String) -> String {
    var out = ""
    var atWordStart = true
    for c in s {
        if c.isWhitespace || "-({[<".contains(c) {
            out.append(c)
            atWordStart = true
        } else {
            out += atWordStart ? c.uppercased() : c.lowercased()
            atWordStart = false
        }
    }
    return out
}

/// `str.format(*args, **kwargs)` with `{}`, `{0}`, `{name}`, `{name.attr}`-less fields and `{{` / `}}`;
/// format specs and conversions are not supported.
func pythonFormat(_ format: String, _ arguments: JinjaInterpreter.Arguments) throws -> String {
    var out = ""
    var chars = Array(format)[...]
    var autoIndex = 0
    while let c = chars.popFirst() {
        if c == "}" {
            guard chars.first == "}" else { throw TemplateError("Single '}' encountered in format string") }
            chars.removeFirst()
            out += "}"
            continue
        }
        guard c == "{" else {
            out.append(c)
            continue
        }
        if chars.first == "{" {
            chars.removeFirst()
            out += "{"
            continue
        }
        var field = ""
        while let d = chars.popFirst(), d != "}" { field.append(d) }
        if field.contains(":") || field.contains("!") {
            throw TemplateError("format specs in str.format are not supported", kind: .unsupported)
        }
        let value: JinjaValue
        if field.isEmpty {
            guard autoIndex < arguments.positional.count else { throw TemplateError("Replacement index out of range") }
            value = arguments.positional[autoIndex]
            autoIndex += 1
        } else if let index = Int(field) {
            guard index < arguments.positional.count else { throw TemplateError("Replacement index out of range") }
            value = arguments.positional[index]
        } else {
            guard let named = arguments.keyword.first(where: { $0.0 == field })?.1 else {
                throw TemplateError("KeyError: '\(field)'")
            }
            value = named
        }
        out += value.str
    }
    return out
}
