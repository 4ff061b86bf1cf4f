import Foundation

/// A parsed Jinja2 template, rendered the way Hugging Face transformers renders chat templates:
/// `trim_blocks=True`, `lstrip_blocks=True`, the `loopcontrols` extension (`break`/`continue`),
/// a `tojson` that does not escape HTML and keeps key order, and the globals `raise_exception`
/// and `strftime_now`.
///
/// Parse once with `init(_:limits:)`, then `render` as often as needed, from any thread.
public struct Template: Sendable {
    /// The bounds that parsing and every render of this template stay within.
    public let limits: Limits
    let body: [JinjaNode]

    /// Parses `source`. Throws `TemplateError` (`.syntax`, `.unsupported`, or `.limit` when it
    /// nests deeper than `limits.maxNestingDepth`) with the line.
    public init(_ source: String, limits: Limits = Limits()) throws {
        self.limits = limits
        var lexer = JinjaLexer(source: source, maxDepth: limits.maxNestingDepth)
        var parser = JinjaParser(tokens: try lexer.tokenize(), maxDepth: limits.maxNestingDepth)
        self.body = try parser.parseTemplate()
    }

    /// Renders the template with `context` as its variables. `now` is the local time that
    /// `strftime_now(format)` formats. Throws `TemplateError`, of kind `.limit` when the render
    /// would pass one of `limits`.
    public func render(_ context: [String: Value], now: Date = Date()) throws -> String {
        try JinjaInterpreter(now: now, limits: limits).render(body, variables: context.mapValues(JinjaValue.init))
    }
}

/// A value a template can be given: what JSON holds, with dict keys in insertion order.
public enum Value: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([Value])
    /// A dict; templates see the keys in this order.
    case dict([(key: String, value: Value)])

    public static func == (a: Value, b: Value) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }
}

extension Value: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: Value...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, Value)...) { self = .dict(elements.map { (key: $0.0, value: $0.1) }) }
}

/// Why a template could not be parsed or rendered.
public struct TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The template is not valid Jinja (unterminated tag, unknown filter, bad expression...).
        case syntax
        /// Valid Jinja that this interpreter does not implement (`extends`, `recursive` loops...).
        case unsupported
        /// An error while rendering (undefined variable used where Jinja fails, bad operand types...).
        case render
        /// The template itself called `raise_exception(message)`; `message` is the template's text.
        case raised
        /// The template went past one of its `Limits`: too deep, too long, or too much work.
        case limit
    }

    public var kind: Kind
    public var message: String
    /// 1-based line in the template source, when known.
    public var line: Int?

    public init(_ kind: Kind, _ message: String, line: Int? = nil) {
        self.kind = kind
        self.message = message
        self.line = line
    }

    /// A render error, the most common kind, before the interpreter gives it a line.
    init(_ message: String, kind: Kind = .render) {
        self.init(kind, message)
    }

    public var description: String {
        let at = line.map { " (line \($0))" } ?? ""
        switch kind {
        case .syntax: return "template syntax error\(at): \(message)"
        case .unsupported: return "template uses unsupported Jinja\(at): \(message)"
        case .render: return "template render error\(at): \(message)"
        case .raised: return "template raised an exception: \(message)"
        case .limit: return "template exceeded a limit\(at): \(message)"
        }
    }
}

extension JinjaValue {
    /// The interpreter's view of a value given by the caller.
    init(_ value: Value) {
        switch value {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let items): self = .array(items.map(JinjaValue.init))
        case .dict(let pairs):
            var dict = JinjaDict()
            for (key, item) in pairs { dict[key] = JinjaValue(item) }
            self = .dict(dict)
        }
    }
}
