import Foundation

// Values of the interpreter, with Python's semantics where Jinja inherits them (truthiness,
// `==`, `str()` / `repr()` of lists and dicts, json.dumps).

/// A dict key: Python dicts take any hashable value; templates use strings and sometimes ints.
enum JinjaKey: Hashable {
    case string(String)
    case int(Int)
    /// A float that is not a whole number, by its bits: a NaN key can then be found again (Python
    /// finds it by identity), where Double's `==` never would.
    case float(bits: UInt64)
    case null

    /// The key for `value`, or nil when `value` is not hashable. As in Python, `True` is the
    /// same key as `1` and `2.0` the same as `2`.
    init?(_ value: JinjaValue) {
        switch value {
        case .string(let s): self = .string(s)
        case .int(let i): self = .int(i)
        case .bool(let b): self = .int(b ? 1 : 0)
        case .double(let d):
            if d == d.rounded(), abs(d) < 9.0e18 { self = .int(Int(d)) } else { self = .float(bits: d.bitPattern) }
        case .null: self = .null
        default: return nil
        }
    }

    var value: JinjaValue {
        switch self {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        case .float(let bits): return .double(Double(bitPattern: bits))
        case .null: return .null
        }
    }

    /// How json.dumps writes the key (it turns non-string keys into strings).
    var jsonName: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .float(let bits): return pythonFloatRepr(Double(bitPattern: bits))
        case .null: return "null"
        }
    }
}

/// An insertion-ordered dictionary (Python dicts keep insertion order).
struct JinjaDict {
    private(set) var keys: [JinjaKey] = []
    private var storage: [JinjaKey: JinjaValue] = [:]

    init() {}

    init(_ pairs: [(String, JinjaValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    subscript(key: JinjaKey) -> JinjaValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    subscript(key: String) -> JinjaValue? {
        get { self[.string(key)] }
        set { self[.string(key)] = newValue }
    }

    var count: Int { keys.count }
    var pairs: [(JinjaKey, JinjaValue)] { keys.map { ($0, storage[$0]!) } }
    var values: [JinjaValue] { keys.map { storage[$0]! } }
    /// `dict.items()` as [key, value] lists.
    var items: [JinjaValue] { keys.map { .array([$0.value, storage[$0]!]) } }
}

/// `namespace()` objects: the one mutable value, shared by reference so that
/// `{% set ns.x = ... %}` inside a loop is seen after it.
final class JinjaNamespace {
    var attributes = JinjaDict()
    init(_ attributes: JinjaDict) { self.attributes = attributes }
}

/// A `{% macro %}` with the frame it was defined in.
final class JinjaMacro {
    let name: String
    let parameters: [(name: String, defaultValue: JinjaExpr?)]
    let body: [JinjaNode]
    let closure: JinjaFrame

    init(name: String, parameters: [(name: String, defaultValue: JinjaExpr?)], body: [JinjaNode], closure: JinjaFrame) {
        self.name = name
        self.parameters = parameters
        self.body = body
        self.closure = closure
    }
}

/// Values never stored in a parsed template are the only ones holding classes (namespaces,
/// macros); the parsed tree holds only constants, so sharing it across threads is safe.
enum JinjaValue: @unchecked Sendable {
    /// A missing variable, attribute or item; `name` is for error messages.
    case undefined(String)
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    /// Lists and tuples alike.
    case array([JinjaValue])
    case dict(JinjaDict)
    case namespace(JinjaNamespace)
    case macro(JinjaMacro)
    /// A global function: range, namespace, dict, raise_exception, strftime_now.
    case builtin(String)

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    var isNone: Bool {
        if case .null = self { return true }
        return false
    }

    /// Python truthiness; undefined is falsy.
    var truthy: Bool {
        switch self {
        case .undefined, .null: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a): return !a.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .macro, .builtin: return true
        }
    }

    /// Python type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .null: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .macro: return "Macro"
        case .builtin: return "function"
        }
    }

    /// Numeric view (bools are ints in Python).
    var number: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    var integer: Int? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return i
        default: return nil
        }
    }

    /// The elements `for` iterates over: list items, dict keys, string characters.
    func iterate() throws -> [JinjaValue] {
        switch self {
        case .undefined: return []
        case .array(let a): return a
        case .dict(let d): return d.keys.map(\.value)
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .namespace(let ns): return ns.attributes.keys.map(\.value)
        default: throw TemplateError("'\(typeName)' object is not iterable")
        }
    }
}

/// Python `repr(float)`: shortest round-trip digits, scientific when the exponent is < -4 or >= 16.
func pythonFloatRepr(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description gives the same shortest digits; only the layout differs.
    var text = "\(d.magnitude)"
    var exponent = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        exponent = Int(text[text.index(after: e)...])!
        text = String(text[..<e])
    }
    var digits: String
    if let dot = text.firstIndex(of: ".") {
        let intPart = String(text[..<dot]), fracPart = String(text[text.index(after: dot)...])
        exponent += intPart.count - 1
        digits = intPart + fracPart
    } else {
        exponent += text.count - 1
        digits = text
    }
    // Normalise: drop leading zeros (0.001 -> "0001") and trailing zeros.
    while digits.hasPrefix("0") && digits.count > 1 {
        digits.removeFirst()
        exponent -= 1
    }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    let sign = d < 0 ? "-" : ""
    if exponent < -4 || exponent >= 16 {
        var mantissa = String(digits.first!)
        if digits.count > 1 { mantissa += "." + digits.dropFirst() }
        let expText = exponent < 0 ? "-" + pad2(-exponent) : "+" + pad2(exponent)
        return sign + mantissa + "e" + expText
    }
    if exponent < 0 {
        return sign + "0." + String(repeating: "0", count: -exponent - 1) + digits
    }
    if digits.count <= exponent + 1 {
        return sign + digits + String(repeating: "0", count: exponent + 1 - digits.count) + ".0"
    }
    let split = digits.index(digits.startIndex, offsetBy: exponent + 1)
    return sign + digits[..<split] + "." + digits[split...]
}

private func pad2(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

/// Python `repr(str)`.
func pythonStringRepr(_ s: String) -> String {
    let quote: Character = (s.contains("'") && !s.contains("\"")) ? "\"" : "'"
    var out = String(quote)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(scalar) == quote {
                out += "\\" + String(quote)
            } else if scalar.value < 0x20 || (0x7f...0xa0).contains(scalar.value) {
                out += "\\x" + hex(scalar.value, width: 2)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    out.append(quote)
    return out
}

func hex(_ value: UInt32, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// Python's `str.isspace()` for one code point.
func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
    scalar.properties.isWhitespace || (0x1c...0x1f).contains(scalar.value)
}

/// Options of Python's `json.dumps` that transformers' `tojson` filter exposes.
struct JSONOptions {
    var indent: String? = nil
    var itemSeparator: String? = nil
    var keySeparator = ": "
    var sortKeys = false
    var ensureASCII = false
}

func jsonString(_ s: String, ensureASCII: Bool) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if scalar.value < 0x20 || (ensureASCII && scalar.value > 0x7e) {
                if scalar.value > 0xFFFF {
                    // UTF-16 surrogate pair, as Python writes it.
                    let v = scalar.value - 0x10000
                    out += "\\u" + hex(0xD800 + (v >> 10), width: 4) + "\\u" + hex(0xDC00 + (v & 0x3FF), width: 4)
                } else {
                    out += "\\u" + hex(scalar.value, width: 4)
                }
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
