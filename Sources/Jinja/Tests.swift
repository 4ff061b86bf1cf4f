// Jinja tests (`value is defined`, `n is divisibleby 3`...), as in Jinja 3.1.

typealias JinjaTest = Builtin<JinjaValue, Bool>

extension JinjaInterpreter {
    func applyTest(_ name: String, _ value: JinjaValue, _ arguments: JinjaCallArguments) throws -> Bool {
        guard let test = Self.tests[name] else { throw TemplateError("unknown test '\(name)'", kind: .syntax) }
        return try test.call(self, name, value, arguments)
    }

    static let tests: [String: JinjaTest] = withAliases([
        "defined": JinjaTest { !$0.subject.isUndefined },
        "undefined": JinjaTest { $0.subject.isUndefined },
        "none": JinjaTest { $0.subject.isNone },
        "string": isCase { if case .string = $0 { true } else { false } },
        "number": isCase { if case .int = $0 { true } else if case .double = $0 { true } else if case .bool = $0 { true } else { false } },
        "integer": isCase { if case .int = $0 { true } else { false } },
        "float": isCase { if case .double = $0 { true } else { false } },
        "boolean": isCase { if case .bool = $0 { true } else { false } },
        "true": isCase { if case .bool(true) = $0 { true } else { false } },
        "false": isCase { if case .bool(false) = $0 { true } else { false } },
        "mapping": isCase { if case .dict = $0 { true } else { false } },
        "iterable": isCase(isSequence),
        "sequence": isCase(isSequence),
        "callable": isCase { if case .macro = $0 { true } else if case .builtin = $0 { true } else { false } },
        "odd": parity(odd: true),
        "even": parity(odd: false),
        "divisibleby": JinjaTest { c in
            guard let i = c.subject.integer, let n = try c.argument().integer, n != 0 else {
                throw TemplateError("divisibleby needs integers")
            }
            return i % n == 0
        },
        "eq": JinjaTest { try $0.interpreter.equals($0.subject, try $0.argument()) },
        "ne": JinjaTest { try !$0.interpreter.equals($0.subject, try $0.argument()) },
        "lt": ordering { $0 < 0 },
        "le": ordering { $0 <= 0 },
        "gt": ordering { $0 > 0 },
        "ge": ordering { $0 >= 0 },
        "in": JinjaTest { try $0.interpreter.contains(try $0.argument(), $0.subject) },
        "lower": JinjaTest { c in
            let s = try c.str(c.subject)
            return s.contains { $0.isCased } && s == s.lowercased()
        },
        "upper": JinjaTest { c in
            let s = try c.str(c.subject)
            return s.contains { $0.isCased } && s == s.uppercased()
        },
        "sameas": JinjaTest { c in
            switch (c.subject, try c.argument()) {
            case (.null, .null): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            case (.int(let a), .int(let b)): return a == b
            default: return false
            }
        },
        "filter": JinjaTest { filters[try $0.str($0.subject)] != nil },
        "test": JinjaTest { tests[try $0.str($0.subject)] != nil },
    ], ["equalto": "eq", "==": "eq", "!=": "ne", "lessthan": "lt", "<": "lt", "<=": "le", "greaterthan": "gt",
        ">": "gt", ">=": "ge"])

    /// A test of the value's type alone.
    private static func isCase(_ matches: @escaping @Sendable (JinjaValue) -> Bool) -> JinjaTest {
        JinjaTest { matches($0.subject) }
    }

    private static func isSequence(_ value: JinjaValue) -> Bool {
        switch value {
        case .undefined, .string, .array, .dict: return true
        default: return false
        }
    }

    private static func parity(odd: Bool) -> JinjaTest {
        JinjaTest { c in
            guard let i = c.subject.integer else { throw TemplateError("the '\(c.name)' test needs an integer") }
            return (i % 2 != 0) == odd
        }
    }

    /// `lt`, `le`, `gt`, `ge`: Python ordering of the value against the argument.
    private static func ordering(_ holds: @escaping @Sendable (Int) -> Bool) -> JinjaTest {
        JinjaTest { holds(try $0.interpreter.compare($0.subject, try $0.argument())) }
    }
}
