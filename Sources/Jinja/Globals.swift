import Foundation

// Global functions: Jinja's `range`, `namespace` and `dict`, and transformers' `raise_exception`
// and `strftime_now`.

typealias JinjaGlobal = Builtin<Void, JinjaValue>

extension JinjaInterpreter {
    static let globals: [String: JinjaGlobal] = [
        "raise_exception": JinjaGlobal { c in
            let message = c.arguments.positional.first ?? c.arguments.keyword.first?.1 ?? .string("")
            throw TemplateError(try c.str(message), kind: .raised)
        },
        "range": JinjaGlobal { c in
            guard c.arguments.keyword.isEmpty, (1...3).contains(c.arguments.positional.count) else {
                throw TemplateError("range() expects 1 to 3 integer arguments")
            }
            let ints = try c.arguments.positional.map { value -> Int in
                guard let i = value.integer else {
                    throw TemplateError("'\(value.typeName)' object cannot be interpreted as an integer")
                }
                return i
            }
            let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
            guard step != 0 else { throw TemplateError("range() arg 3 must not be zero") }
            if (step > 0 && start >= stop) || (step < 0 && start <= stop) { return .array([]) }
            // The length; a span that overflows Int is far too long anyway.
            let (span, overflow) = step > 0 ? stop.subtractingReportingOverflow(start) : start.subtractingReportingOverflow(stop)
            let length = overflow ? .max : (span.magnitude - 1) / step.magnitude + 1
            let maximum = c.interpreter.budget.limits.maxListLength
            guard length <= maximum else { throw TemplateError("range too big, maximum size is \(maximum)", kind: .limit) }
            return .array(stride(from: start, to: stop, by: step).map { .int($0) })
        },
        "namespace": JinjaGlobal { c in
            let namespace = JinjaNamespace(try mergedDict(c))
            c.interpreter.budget.keep(namespace)
            return .namespace(namespace)
        },
        "dict": JinjaGlobal { c in
            let dict = try mergedDict(c)
            try c.interpreter.budget.checkNesting(of: dict.values)
            return .dict(dict)
        },
        "strftime_now": JinjaGlobal { c in
            guard case .string(let format)? = c.arguments.positional.first else {
                throw TemplateError("strftime_now() expects a format string")
            }
            return .string(strftime(format, at: c.interpreter.now))
        },
    ]

    /// `dict(...)` / `namespace(...)`: the positional dicts merged, then the keyword arguments.
    private static func mergedDict(_ c: BuiltinCall<Void>) throws -> JinjaDict {
        var attributes = JinjaDict()
        for value in c.arguments.positional {
            guard case .dict(let dict) = value else { throw TemplateError("\(c.name)() positional argument must be a dict") }
            for (key, item) in dict.pairs { attributes[key] = item }
        }
        for (key, value) in c.arguments.keyword { attributes[key] = value }
        return attributes
    }

    /// `datetime.now().strftime(format)` in the local time zone, at `now`.
    private static func strftime(_ format: String, at now: Date) -> String {
        var seconds = time_t(now.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 512)
        let count = Foundation.strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
