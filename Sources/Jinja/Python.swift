// Python's `==`, ordering, `str()`, `repr()` and `json.dumps` on values, within the render's
// limits: a template can build lists that share elements (`[x, x]` compares and prints `x` twice,
// so a few steps make a value exponentially long to walk) and namespaces that hold themselves.

/// A string being built that throws rather than grow past the render's `maxOutputBytes`.
struct BoundedText {
    let budget: RenderBudget
    private(set) var text = ""

    init(_ budget: RenderBudget) {
        self.budget = budget
    }

    mutating func append(_ piece: String) throws {
        try budget.checkBytes(text.utf8.count + piece.utf8.count)
        text += piece
    }

    /// Appends Python `str(value)`: strings as they are, undefined as nothing, the rest as `repr`.
    mutating func append(str value: JinjaValue) throws {
        switch value {
        case .undefined: break
        case .string(let s): try append(s)
        default: try append(repr: value)
        }
    }

    /// Appends Python `repr(value)`. A namespace met again inside itself prints as
    /// `<Namespace {...}>`, as in Python; nesting deeper than `maxNestingDepth` throws.
    mutating func append(repr value: JinjaValue, level: Int = 0, open: Set<ObjectIdentifier> = []) throws {
        guard level <= budget.limits.maxNestingDepth else {
            throw TemplateError("the template printed a value nested deeper than \(budget.limits.maxNestingDepth) levels",
                                kind: .limit)
        }
        switch value {
        case .undefined: break
        case .null: try append("None")
        case .bool(let b): try append(b ? "True" : "False")
        case .int(let i): try append(String(i))
        case .double(let d): try append(pythonFloatRepr(d))
        case .string(let s): try append(pythonStringRepr(s))
        case .array(let items):
            try append("[")
            for (index, item) in items.enumerated() {
                if index > 0 { try append(", ") }
                try append(repr: item, level: level + 1, open: open)
            }
            try append("]")
        case .dict(let dict):
            try append("{")
            for (index, (key, item)) in dict.pairs.enumerated() {
                if index > 0 { try append(", ") }
                try append(repr: key.value)
                try append(": ")
                try append(repr: item, level: level + 1, open: open)
            }
            try append("}")
        case .namespace(let ns):
            guard !open.contains(ObjectIdentifier(ns)) else { return try append("<Namespace {...}>") }
            try append("<Namespace ")
            try append(repr: .dict(ns.attributes), level: level + 1, open: open.union([ObjectIdentifier(ns)]))
            try append(">")
        case .macro(let m): try append("<Macro '\(m.name)'>")
        case .builtin(let name): try append("<function \(name)>")
        }
    }

    /// Appends Python `json.dumps(value, ...)` with `options`, at indentation `level`.
    mutating func append(json value: JinjaValue, _ options: JSONOptions, level: Int = 0,
                         compare: (JinjaValue, JinjaValue) throws -> Int) throws {
        guard level <= budget.limits.maxNestingDepth else {
            throw TemplateError("tojson: value nested deeper than \(budget.limits.maxNestingDepth) levels", kind: .limit)
        }
        let itemSeparator = options.itemSeparator ?? (options.indent == nil ? ", " : ",")
        /// Writes `count` items between `open` and `close`, one a line when indenting.
        func container(_ open: String, _ close: String, _ count: Int,
                       _ item: (inout BoundedText, Int) throws -> Void) throws {
            try append(open)
            guard count > 0 else { return try append(close) }
            let inner = options.indent.map { "\n" + String(repeating: $0, count: level + 1) }
            for index in 0..<count {
                if index > 0 { try append(itemSeparator) }
                if let inner { try append(inner) }
                try item(&self, index)
            }
            if let indent = options.indent { try append("\n" + String(repeating: indent, count: level)) }
            try append(close)
        }
        switch value {
        case .null: try append("null")
        case .bool(let b): try append(b ? "true" : "false")
        case .int(let i): try append(String(i))
        case .double(let d):
            try append(d.isNaN ? "NaN" : d.isInfinite ? (d < 0 ? "-Infinity" : "Infinity") : pythonFloatRepr(d))
        case .string(let s): try append(jsonString(s, ensureASCII: options.ensureASCII))
        case .array(let items):
            try container("[", "]", items.count) { text, index in
                try text.append(json: items[index], options, level: level + 1, compare: compare)
            }
        case .dict(let dict):
            var pairs = dict.pairs
            if options.sortKeys { pairs.sort { ((try? compare($0.0.value, $1.0.value)) ?? 0) < 0 } }
            try container("{", "}", pairs.count) { text, index in
                try text.append(jsonString(pairs[index].0.jsonName, ensureASCII: options.ensureASCII) + options.keySeparator)
                try text.append(json: pairs[index].1, options, level: level + 1, compare: compare)
            }
        case .namespace, .macro, .builtin, .undefined:
            throw TemplateError("Object of type \(value.typeName) is not JSON serializable")
        }
    }
}

extension JinjaInterpreter {
    /// Python `str(value)`, which is what `{{ value }}` prints. Undefined prints as "".
    func str(_ value: JinjaValue) throws -> String {
        if case .string(let s) = value { return s }
        var text = BoundedText(budget)
        try text.append(str: value)
        return text.text
    }

    /// Python `repr(value)`.
    func repr(_ value: JinjaValue) throws -> String {
        var text = BoundedText(budget)
        try text.append(repr: value)
        return text.text
    }

    /// Python `json.dumps(value, ...)`.
    func json(_ value: JinjaValue, _ options: JSONOptions) throws -> String {
        var text = BoundedText(budget)
        try text.append(json: value, options, compare: compare)
        return text.text
    }

    /// Python `==`; a step per element compared.
    func equals(_ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        try budget.charge(RenderBudget.cost(of: a))
        switch (a, b) {
        case (.undefined, .undefined), (.null, .null): return true
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)):
            return try x.count == y.count && zip(x, y).allSatisfy { try equals($0, $1) }
        case (.dict(let x), .dict(let y)):
            guard x.count == y.count else { return false }
            return try x.pairs.allSatisfy { key, value in try y[key].map { try equals(value, $0) } ?? false }
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.macro(let x), .macro(let y)): return x === y
        case (.builtin(let x), .builtin(let y)): return x == y
        default:
            if let x = a.integer, let y = b.integer { return x == y }
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// Python ordering for `<`, `sort`, `min`...: -1, 0 or 1; throws for types Python cannot order.
    func compare(_ a: JinjaValue, _ b: JinjaValue) throws -> Int {
        try budget.charge(RenderBudget.cost(of: a))
        switch (a, b) {
        case (.string(let x), .string(let y)):
            // Python compares strings by code point.
            var xs = x.unicodeScalars.makeIterator(), ys = y.unicodeScalars.makeIterator()
            while true {
                switch (xs.next(), ys.next()) {
                case (nil, nil): return 0
                case (nil, _): return -1
                case (_, nil): return 1
                case (let p?, let q?) where p != q: return p.value < q.value ? -1 : 1
                default: continue
                }
            }
        case (.array(let x), .array(let y)):
            for (p, q) in zip(x, y) where !(try equals(p, q)) { return try compare(p, q) }
            return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
        default:
            if let x = a.integer, let y = b.integer { return x == y ? 0 : (x < y ? -1 : 1) }
            if let x = a.number, let y = b.number { return x == y ? 0 : (x < y ? -1 : 1) }
            throw TemplateError("'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
    }
}
