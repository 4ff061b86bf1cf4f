// The shape every built-in shares: filters, tests, global functions and the Python methods
// of str, list and dict are tables from a name to a `Builtin`, one entry each.

/// Arguments of a call, evaluated.
struct JinjaCallArguments {
    var positional: [JinjaValue] = []
    var keyword: [(String, JinjaValue)] = []

    /// Python-style binding of `parameters` (in order) from positional then keyword arguments.
    func bind(_ function: String, _ parameters: [String]) throws -> [JinjaValue?] {
        guard positional.count <= parameters.count else {
            throw TemplateError("\(function)() takes at most \(parameters.count) arguments (\(positional.count) given)")
        }
        var bound: [JinjaValue?] = positional.map { $0 } + Array(repeating: nil, count: parameters.count - positional.count)
        for (key, value) in keyword {
            guard let index = parameters.firstIndex(of: key) else {
                throw TemplateError("\(function)() got an unexpected keyword argument '\(key)'")
            }
            if bound[index] != nil {
                throw TemplateError("\(function)() got multiple values for argument '\(key)'")
            }
            bound[index] = value
        }
        return bound
    }
}

/// One call of a built-in: what it applies to and its arguments.
struct BuiltinCall<Subject> {
    let interpreter: JinjaInterpreter
    let name: String
    /// The filtered or tested value, the string/list/dict a method is called on; `()` for globals.
    let subject: Subject
    let arguments: JinjaCallArguments
    /// `arguments` bound to the built-in's parameters (empty when it declares none).
    let bound: [JinjaValue?]

    /// Parameter `index`, nil when not given.
    subscript(_ index: Int) -> JinjaValue? { bound[index] }

    /// Python `str(value)`.
    func str(_ value: JinjaValue) throws -> String { try interpreter.str(value) }

    /// Parameter `index` as a string; nil when not given or none.
    func string(_ index: Int) throws -> String? {
        guard let value = bound[index], !value.isNone else { return nil }
        return try str(value)
    }

    /// Parameter `index` as a flag (false when not given).
    func flag(_ index: Int) -> Bool { bound[index]?.truthy ?? false }

    /// The first argument, positional or keyword; for tests, which take at most one.
    func argument() throws -> JinjaValue {
        guard let first = arguments.positional.first ?? arguments.keyword.first?.1 else {
            throw TemplateError("the '\(name)' test needs an argument")
        }
        return first
    }
}

/// A filter, test, method or global function.
struct Builtin<Subject, Result>: Sendable {
    /// Parameter names, bound Python-style into `BuiltinCall.bound`; nil when the built-in reads
    /// `BuiltinCall.arguments` itself (variadic ones such as `map` or `namespace`) or ignores them.
    let parameters: [String]?
    let body: @Sendable (BuiltinCall<Subject>) throws -> Result

    init(_ parameters: [String]? = nil, _ body: @escaping @Sendable (BuiltinCall<Subject>) throws -> Result) {
        self.parameters = parameters
        self.body = body
    }

    /// Calls the built-in, charging the render for the strings it reads and the value it builds.
    func call(_ interpreter: JinjaInterpreter, _ name: String, _ subject: Subject,
              _ arguments: JinjaCallArguments) throws -> Result {
        let budget = interpreter.budget
        let read: [Any] = [subject] + arguments.positional + arguments.keyword.map(\.1)
        try budget.charge(read.reduce(0) { $0 + Self.readingCost($1) })
        let bound = try parameters.map { try arguments.bind(name, $0) } ?? []
        try budget.enter()
        defer { budget.leave() }
        let result = try body(BuiltinCall(interpreter: interpreter, name: name, subject: subject, arguments: arguments,
                                          bound: bound))
        if let value = result as? JinjaValue { try budget.charge(building: value) }
        return result
    }

    /// Steps for reading `value` when it is a string (built-ins may walk strings; lists and dicts
    /// they walk are charged as they are compared or built).
    private static func readingCost(_ value: Any) -> Int {
        switch value {
        case let text as String: return RenderBudget.cost(of: .string(text))
        case let value as JinjaValue: if case .string = value { return RenderBudget.cost(of: value) } else { return 0 }
        default: return 0
        }
    }
}

/// `table` with each alias entry pointing at the entry it names.
func withAliases<Value>(_ table: [String: Value], _ aliases: [String: String]) -> [String: Value] {
    var result = table
    for (alias, name) in aliases { result[alias] = table[name]! }
    return result
}
