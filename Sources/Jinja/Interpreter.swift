import Foundation

// Evaluates a parsed template. Scoping follows Jinja: each loop iteration, macro call and
// `with` block gets a fresh frame that reads through to its parent; `set` writes to the
// innermost frame (so assignments in a loop body do not leak, hence `namespace()`); `if`
// blocks do not open a frame.

final class JinjaFrame {
    var variables: [String: JinjaValue] = [:]
    let parent: JinjaFrame?

    init(parent: JinjaFrame?) {
        self.parent = parent
    }

    func lookup(_ name: String) -> JinjaValue? {
        var frame: JinjaFrame? = self
        while let current = frame {
            if let value = current.variables[name] { return value }
            frame = current.parent
        }
        return nil
    }
}

private enum JinjaLoopControl: Error {
    case breakLoop, continueLoop
}

struct JinjaInterpreter {
    let now: Date
    /// What this render has used of its limits, shared by copies of the interpreter.
    let budget: RenderBudget

    init(now: Date, limits: Limits) {
        self.now = now
        self.budget = RenderBudget(limits)
    }

    func render(_ nodes: [JinjaNode], variables: [String: JinjaValue]) throws -> String {
        let globals = JinjaFrame(parent: nil)
        for name in Self.globals.keys { globals.variables[name] = .builtin(name) }
        let root = JinjaFrame(parent: globals)
        root.variables = variables
        defer { budget.finish() }
        var out = ""
        try execute(nodes, root, &out)
        return out
    }

    // MARK: - Statements

    private func execute(_ nodes: [JinjaNode], _ frame: JinjaFrame, _ out: inout String) throws {
        for node in nodes { try execute(node, frame, &out) }
    }

    /// Runs one node, attaching its line to errors raised inside it that have none yet.
    private func execute(_ node: JinjaNode, _ frame: JinjaFrame, _ out: inout String) throws {
        do {
            try budget.charge()
            try budget.enter()
            defer { budget.leave() }
            try run(node, frame, &out)
            try budget.checkLength(of: out)
        } catch var error as TemplateError where error.line == nil {
            error.line = node.line
            throw error
        }
    }

    private func run(_ node: JinjaNode, _ frame: JinjaFrame, _ out: inout String) throws {
        switch node {
        case .text(let text):
            out += text
        case .output(let expr, _):
            out += try str(try eval(expr, frame))
        case .ifChain(let branches, let otherwise, _):
            for (condition, body) in branches where try eval(condition, frame).truthy {
                try execute(body, frame, &out)
                return
            }
            try execute(otherwise, frame, &out)
        case .forLoop(let target, let iterableExpr, let condition, let body, let otherwise, _):
            try runFor(target, iterableExpr, condition, body, otherwise, frame, &out)
        case .set(let target, let valueExpr, _):
            try assign(target, try eval(valueExpr, frame), frame)
        case .setBlock(let target, let filters, let body, _):
            var captured = ""
            try execute(body, JinjaFrame(parent: frame), &captured)
            var value = JinjaValue.string(captured)
            for filter in filters { value = try applyFilter(filter.name, value, filter.arguments, frame, line: filter.line) }
            try assign(target, value, frame)
        case .macro(let name, let parameters, let body):
            budget.keep(macroFrame: frame)
            frame.variables[name] = .macro(JinjaMacro(name: name, parameters: parameters, body: body, closure: frame))
        case .with(let assignments, let body, _):
            let inner = JinjaFrame(parent: frame)
            for (name, valueExpr) in assignments { inner.variables[name] = try eval(valueExpr, frame) }
            try execute(body, inner, &out)
        case .filterBlock(let filters, let body, _):
            var captured = ""
            try execute(body, JinjaFrame(parent: frame), &captured)
            var value = JinjaValue.string(captured)
            for filter in filters { value = try applyFilter(filter.name, value, filter.arguments, frame, line: filter.line) }
            out += try str(value)
        case .breakLoop:
            throw JinjaLoopControl.breakLoop
        case .continueLoop:
            throw JinjaLoopControl.continueLoop
        }
    }

    private func runFor(_ target: JinjaAssignTarget, _ iterableExpr: JinjaExpr, _ condition: JinjaExpr?,
                        _ body: [JinjaNode], _ otherwise: [JinjaNode], _ frame: JinjaFrame,
                        _ out: inout String) throws {
        let iterable = try eval(iterableExpr, frame)
        if iterable.isNone { throw TemplateError("'NoneType' object is not iterable") }
        var items = try iterable.iterate()
        if let condition {
            items = try items.filter { item in
                let test = JinjaFrame(parent: frame)
                try assign(target, item, test)
                return try eval(condition, test).truthy
            }
        }
        if items.isEmpty {
            try execute(otherwise, JinjaFrame(parent: frame), &out)
            return
        }
        let length = items.count
        for (index, item) in items.enumerated() {
            let iteration = JinjaFrame(parent: frame)
            try assign(target, item, iteration)
            var loop = JinjaDict([
                ("index", .int(index + 1)), ("index0", .int(index)),
                ("revindex", .int(length - index)), ("revindex0", .int(length - index - 1)),
                ("first", .bool(index == 0)), ("last", .bool(index == length - 1)),
                ("length", .int(length)), ("depth", .int(1)), ("depth0", .int(0)),
            ])
            if index > 0 { loop["previtem"] = items[index - 1] }
            if index + 1 < length { loop["nextitem"] = items[index + 1] }
            try budget.checkNesting(of: loop.values)
            try budget.charge(building: .dict(loop))
            iteration.variables["loop"] = .dict(loop)
            do {
                try execute(body, iteration, &out)
            } catch JinjaLoopControl.breakLoop {
                break
            } catch JinjaLoopControl.continueLoop {
                continue
            }
        }
    }

    private func assign(_ target: JinjaAssignTarget, _ value: JinjaValue, _ frame: JinjaFrame) throws {
        switch target {
        case .name(let name):
            frame.variables[name] = value
        case .tuple(let names):
            let items = try value.iterate()
            guard items.count == names.count else {
                throw TemplateError(items.count < names.count
                    ? "not enough values to unpack (expected \(names.count), got \(items.count))"
                    : "too many values to unpack (expected \(names.count))")
            }
            for (name, item) in zip(names, items) { frame.variables[name] = item }
        case .attribute(let objectName, let attribute):
            guard case .namespace(let namespace)? = frame.lookup(objectName) else {
                throw TemplateError("cannot assign attribute on non-namespace object '\(objectName)'")
            }
            namespace.attributes[attribute] = value
        }
    }

    // MARK: - Expressions

    func eval(_ expr: JinjaExpr, _ frame: JinjaFrame) throws -> JinjaValue {
        try budget.charge()
        try budget.enter()
        defer { budget.leave() }
        switch expr {
        case .literal(let value):
            return value
        case .name(let name):
            return frame.lookup(name) ?? .undefined("'\(name)' is undefined")
        case .list(let items), .tuple(let items):
            let values = try items.map { try eval($0, frame) }
            try budget.checkNesting(of: values)
            return .array(values)
        case .dict(let pairs):
            var dict = JinjaDict()
            for (keyExpr, valueExpr) in pairs {
                let key = try eval(keyExpr, frame)
                guard let hashable = JinjaKey(key) else { throw TemplateError("unhashable type: '\(key.typeName)'") }
                dict[hashable] = try eval(valueExpr, frame)
            }
            try budget.checkNesting(of: dict.values)
            return .dict(dict)
        case .getattr(let objectExpr, let name):
            return try getAttribute(try eval(objectExpr, frame), name)
        case .getitem(let objectExpr, let keyExpr):
            return try getItem(try eval(objectExpr, frame), try eval(keyExpr, frame))
        case .slice(let objectExpr, let startExpr, let stopExpr, let stepExpr):
            let object = try eval(objectExpr, frame)
            func bound(_ e: JinjaExpr?) throws -> Int? {
                guard let e else { return nil }
                let value = try eval(e, frame)
                if value.isNone { return nil }
                guard let i = value.integer else {
                    throw TemplateError("slice indices must be integers or None")
                }
                return i
            }
            let result = try slice(object, try bound(startExpr), try bound(stopExpr), try bound(stepExpr))
            try budget.charge(building: result)
            return result
        case .call(let callee, let argumentExprs):
            let arguments = try evalArguments(argumentExprs, frame)
            if case .getattr(let objectExpr, let name) = callee {
                let object = try eval(objectExpr, frame)
                if let result = try callMethod(object, name, arguments) { return result }
                return try call(try getAttribute(object, name), arguments)
            }
            return try call(try eval(callee, frame), arguments)
        case .filter(let valueExpr, let name, let arguments, let line):
            return try applyFilter(name, try eval(valueExpr, frame), arguments, frame, line: line)
        case .test(let valueExpr, let name, let argumentExprs, let line):
            try jinjaCheckTest(name, line: line)
            return .bool(try applyTest(name, try eval(valueExpr, frame), try evalArguments(argumentExprs, frame)))
        case .not(let value):
            return .bool(!(try eval(value, frame).truthy))
        case .negate(let valueExpr):
            let value = try eval(valueExpr, frame)
            try failIfUndefined(value)
            if let i = value.integer {
                let (negated, overflow) = 0.subtractingReportingOverflow(i)
                if overflow { throw TemplateError("integer overflow in unary -") }
                return .int(negated)
            }
            if case .double(let d) = value { return .double(-d) }
            throw TemplateError("bad operand type for unary -: '\(value.typeName)'")
        case .plus(let valueExpr):
            let value = try eval(valueExpr, frame)
            try failIfUndefined(value)
            if let i = value.integer { return .int(i) }
            if case .double = value { return value }
            throw TemplateError("bad operand type for unary +: '\(value.typeName)'")
        case .binary(let op, let leftExpr, let rightExpr):
            let result = try binary(op, try eval(leftExpr, frame), try eval(rightExpr, frame))
            try budget.charge(building: result)
            return result
        case .and(let leftExpr, let rightExpr):
            let left = try eval(leftExpr, frame)
            return left.truthy ? try eval(rightExpr, frame) : left
        case .or(let leftExpr, let rightExpr):
            let left = try eval(leftExpr, frame)
            return left.truthy ? left : try eval(rightExpr, frame)
        case .compare(let firstExpr, let rest):
            var left = try eval(firstExpr, frame)
            for (op, rightExpr) in rest {
                let right = try eval(rightExpr, frame)
                if !(try compare(op, left, right)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let condition, let then, let otherwise):
            if try eval(condition, frame).truthy { return try eval(then, frame) }
            if let otherwise { return try eval(otherwise, frame) }
            return .undefined("the inline if-expression evaluated to false and has no else section")
        }
    }

    func evalArguments(_ arguments: JinjaArguments, _ frame: JinjaFrame) throws -> JinjaCallArguments {
        JinjaCallArguments(positional: try arguments.positional.map { try eval($0, frame) },
                  keyword: try arguments.keyword.map { ($0.0, try eval($0.1, frame)) })
    }

    func failIfUndefined(_ value: JinjaValue) throws {
        if case .undefined(let message) = value { throw TemplateError(message) }
    }

    /// `object.name`: Jinja tries the attribute, then the item.
    func getAttribute(_ object: JinjaValue, _ name: String) throws -> JinjaValue {
        switch object {
        case .undefined(let message):
            throw TemplateError(message)
        case .dict(let dict):
            return dict[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .namespace(let namespace):
            return namespace.attributes[name] ?? .undefined("'Namespace object' has no attribute '\(name)'")
        default:
            return .undefined("'\(object.typeName) object' has no attribute '\(name)'")
        }
    }

    /// `object[key]`: Jinja tries the item, then the attribute.
    func getItem(_ object: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch (object, key) {
        case (.undefined(let message), _):
            throw TemplateError(message)
        case (.dict(let dict), _) where JinjaKey(key).map { dict[$0] != nil } ?? false:
            return dict[JinjaKey(key)!]!
        case (.array(let items), _) where key.integer != nil:
            let i = key.integer!
            let index = i < 0 ? items.count + i : i
            guard items.indices.contains(index) else { return .undefined("'list object' has no element \(i)") }
            return items[index]
        case (.string(let text), _) where key.integer != nil:
            try budget.charge(RenderBudget.cost(of: object))
            let scalars = Array(text.unicodeScalars)
            let i = key.integer!
            let index = i < 0 ? scalars.count + i : i
            guard scalars.indices.contains(index) else { return .undefined("'str object' has no element \(i)") }
            return .string(String(scalars[index]))
        case (_, .string(let name)):
            return try getAttribute(object, name)
        default:
            return .undefined("'\(object.typeName) object' has no element \((try? repr(key)) ?? key.typeName)")
        }
    }

    private func slice(_ object: JinjaValue, _ start: Int?, _ stop: Int?, _ step: Int?) throws -> JinjaValue {
        func indices(_ count: Int) throws -> [Int] {
            let step = step ?? 1
            guard step != 0 else { throw TemplateError("slice step cannot be zero") }
            func clamp(_ value: Int?, _ defaultValue: Int, low: Int, high: Int) -> Int {
                guard var v = value else { return defaultValue }
                if v < 0 { v += count }
                return min(max(v, low), high)
            }
            if step > 0 {
                let from = clamp(start, 0, low: 0, high: count), to = clamp(stop, count, low: 0, high: count)
                return from < to ? Array(stride(from: from, to: to, by: step)) : []
            }
            let from = clamp(start, count - 1, low: -1, high: count - 1)
            let to = clamp(stop, -1, low: -1, high: count - 1)
            return from > to ? Array(stride(from: from, to: to, by: step)) : []
        }
        switch object {
        case .undefined(let message):
            throw TemplateError(message)
        case .array(let items):
            return .array(try indices(items.count).map { items[$0] })
        case .string(let text):
            try budget.charge(RenderBudget.cost(of: object))
            let scalars = Array(text.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try indices(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        default:
            return .undefined("'\(object.typeName)' object is not subscriptable")
        }
    }

    // MARK: - Operators

    private func binary(_ op: String, _ left: JinjaValue, _ right: JinjaValue) throws -> JinjaValue {
        if op == "~" {
            var text = BoundedText(budget)
            try text.append(str: left)
            try text.append(str: right)
            return .string(text.text)
        }
        try failIfUndefined(left)
        try failIfUndefined(right)
        func unsupported() -> TemplateError {
            TemplateError("unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'")
        }
        /// `op` on two ints, or nil when they are not both ints; throws when the result does not fit.
        func checked(_ operation: (Int, Int) -> (partialValue: Int, overflow: Bool)) throws -> JinjaValue? {
            guard let a = left.integer, let b = right.integer else { return nil }
            let (result, overflow) = operation(a, b)
            if overflow { throw TemplateError("integer overflow in '\(op)'") }
            return .int(result)
        }
        switch op {
        case "+":
            switch (left, right) {
            case (.string(let a), .string(let b)):
                try budget.checkBytes(a.utf8.count + b.utf8.count)
                return .string(a + b)
            case (.array(let a), .array(let b)):
                try budget.checkLength(a.count + b.count)
                return .array(a + b)
            default:
                if let sum = try checked({ $0.addingReportingOverflow($1) }) { return sum }
                if let a = left.number, let b = right.number { return .double(a + b) }
                if case .string = left { throw TemplateError("can only concatenate str (not \"\(right.typeName)\") to str") }
                throw unsupported()
            }
        case "-":
            if let difference = try checked({ $0.subtractingReportingOverflow($1) }) { return difference }
            if let a = left.number, let b = right.number { return .double(a - b) }
            throw unsupported()
        case "*":
            if let product = try checked({ $0.multipliedReportingOverflow(by: $1) }) { return product }
            if let a = left.number, let b = right.number { return .double(a * b) }
            switch (left, right) {
            case (.string(let s), _) where right.integer != nil: return .string(try repeated(s, right.integer!))
            case (_, .string(let s)) where left.integer != nil: return .string(try repeated(s, left.integer!))
            case (.array(let a), _) where right.integer != nil: return .array(try repeated(a, right.integer!))
            case (_, .array(let a)) where left.integer != nil: return .array(try repeated(a, left.integer!))
            default: throw unsupported()
            }
        case "/":
            guard let a = left.number, let b = right.number else { throw unsupported() }
            guard b != 0 else { throw TemplateError("division by zero") }
            return .double(a / b)
        case "//":
            if let a = left.integer, let b = right.integer {
                guard b != 0 else { throw TemplateError("integer division or modulo by zero") }
                let (q, overflow) = a.dividedReportingOverflow(by: b)
                if overflow { throw TemplateError("integer overflow in '//'") }
                return .int((a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q)
            }
            guard let a = left.number, let b = right.number else { throw unsupported() }
            guard b != 0 else { throw TemplateError("float floor division by zero") }
            return .double((a / b).rounded(.down))
        case "%":
            if case .string(let format) = left { return .string(try percentFormat(format, right)) }
            if let a = left.integer, let b = right.integer {
                guard b != 0 else { throw TemplateError("integer division or modulo by zero") }
                // Int.min % -1 overflows in Swift; in Python it is 0, as is the partial value.
                let r = a.remainderReportingOverflow(dividingBy: b).partialValue
                return .int((r != 0 && (r < 0) != (b < 0)) ? r + b : r)
            }
            guard let a = left.number, let b = right.number else { throw unsupported() }
            guard b != 0 else { throw TemplateError("float modulo") }
            let r = a.truncatingRemainder(dividingBy: b)
            return .double((r != 0 && (r < 0) != (b < 0)) ? r + b : r)
        case "**":
            if let a = left.integer, let b = right.integer, b >= 0 { return .int(try power(a, b)) }
            guard let a = left.number, let b = right.number else { throw unsupported() }
            if a == 0 && b < 0 { throw TemplateError("0.0 cannot be raised to a negative power") }
            return .double(pow(a, b))
        default:
            throw TemplateError("unknown operator '\(op)'")
        }
    }

    /// `base ** exponent` by repeated squaring; throws when it does not fit an Int.
    private func power(_ base: Int, _ exponent: Int) throws -> Int {
        var result = 1, factor = base, rest = exponent
        while rest > 0 {
            if rest & 1 == 1 {
                let (product, overflow) = result.multipliedReportingOverflow(by: factor)
                if overflow { throw TemplateError("integer overflow in '**'") }
                result = product
            }
            rest >>= 1
            if rest > 0 {
                let (square, overflow) = factor.multipliedReportingOverflow(by: factor)
                if overflow { throw TemplateError("integer overflow in '**'") }
                factor = square
            }
        }
        return result
    }

    /// `s * count` (empty for count <= 0), within the string limit.
    private func repeated(_ s: String, _ count: Int) throws -> String {
        guard count > 0 else { return "" }
        let (bytes, overflow) = s.utf8.count.multipliedReportingOverflow(by: count)
        try budget.checkBytes(overflow ? .max : bytes)
        return String(repeating: s, count: count)
    }

    /// `items * count` (empty for count <= 0), within the list limit.
    private func repeated(_ items: [JinjaValue], _ count: Int) throws -> [JinjaValue] {
        guard count > 0 else { return [] }
        let (length, overflow) = items.count.multipliedReportingOverflow(by: count)
        try budget.checkLength(overflow ? .max : length)
        return Array(Array(repeating: items, count: count).joined())
    }

    /// Python's `format % values` for the common conversions (%s %r %d %i %f %%).
    private func percentFormat(_ format: String, _ values: JinjaValue) throws -> String {
        var arguments: [JinjaValue]
        if case .array(let items) = values { arguments = items } else { arguments = [values] }
        var out = BoundedText(budget)
        var chars = Array(format)[...]
        while let c = chars.popFirst() {
            guard c == "%" else {
                try out.append(String(c))
                continue
            }
            guard let conversion = chars.popFirst() else { throw TemplateError("incomplete format") }
            if conversion == "%" {
                try out.append("%")
                continue
            }
            guard !arguments.isEmpty else { throw TemplateError("not enough arguments for format string") }
            let argument = arguments.removeFirst()
            switch conversion {
            case "s": try out.append(str: argument)
            case "r": try out.append(repr: argument)
            case "d", "i":
                guard let n = argument.number else { throw TemplateError("%d format: a real number is required") }
                try out.append(try integerText(n))
            case "f":
                guard let n = argument.number else { throw TemplateError("%f format: a real number is required") }
                try out.append(String(format: "%f", n))
            default:
                throw TemplateError("the '%\(conversion)' format is not supported", kind: .unsupported)
            }
        }
        if !arguments.isEmpty { throw TemplateError("not all arguments converted during string formatting") }
        return out.text
    }

    /// `%d` of `n`: its integer part in full, as Python prints it (1e300 has 301 digits).
    private func integerText(_ n: Double) throws -> String {
        if n.isNaN { throw TemplateError("cannot convert float NaN to integer") }
        if n.isInfinite { throw TemplateError("cannot convert float infinity to integer") }
        if let i = Int(exactly: n.rounded(.towardZero)) { return String(i) }
        return String(format: "%.0f", n.rounded(.towardZero))
    }

    private func compare(_ op: String, _ left: JinjaValue, _ right: JinjaValue) throws -> Bool {
        switch op {
        case "==": return try equals(left, right)
        case "!=": return !(try equals(left, right))
        case "in": return try contains(right, left)
        case "notin": return !(try contains(right, left))
        default:
            try failIfUndefined(left)
            try failIfUndefined(right)
            let order = try compare(left, right)
            switch op {
            case "<": return order < 0
            case "<=": return order <= 0
            case ">": return order > 0
            default: return order >= 0
            }
        }
    }

    func contains(_ container: JinjaValue, _ item: JinjaValue) throws -> Bool {
        switch container {
        case .undefined: return false
        case .string(let text):
            guard case .string(let needle) = item else {
                throw TemplateError("'in <string>' requires string as left operand, not \(item.typeName)")
            }
            try budget.charge(RenderBudget.cost(of: container))
            return needle.isEmpty || !pythonOccurrences(of: Array(needle.unicodeScalars), in: Array(text.unicodeScalars), limit: 1).isEmpty
        case .array(let items): return try items.contains { try equals($0, item) }
        case .dict(let dict):
            return JinjaKey(item).map { dict[$0] != nil } ?? false
        case .namespace(let namespace):
            if case .string(let key) = item { return namespace.attributes[key] != nil }
            return false
        default:
            throw TemplateError("argument of type '\(container.typeName)' is not iterable")
        }
    }

    // MARK: - Calls

    func call(_ callee: JinjaValue, _ arguments: JinjaCallArguments) throws -> JinjaValue {
        switch callee {
        case .undefined(let message):
            throw TemplateError(message)
        case .macro(let macro):
            return try callMacro(macro, arguments)
        case .builtin(let name):
            guard let function = Self.globals[name] else { throw TemplateError("'\(name)' is undefined") }
            return try function.call(self, name, (), arguments)
        default:
            throw TemplateError("'\(callee.typeName)' object is not callable")
        }
    }

    private func callMacro(_ macro: JinjaMacro, _ arguments: JinjaCallArguments) throws -> JinjaValue {
        let frame = JinjaFrame(parent: macro.closure)
        let names = macro.parameters.map(\.name)
        guard arguments.positional.count <= names.count else {
            throw TemplateError("macro '\(macro.name)' takes not more than \(names.count) argument(s)")
        }
        let bound = try arguments.bind("macro '\(macro.name)'", names)
        for (parameter, value) in zip(macro.parameters, bound) {
            if let value {
                frame.variables[parameter.name] = value
            } else if let defaultValue = parameter.defaultValue {
                frame.variables[parameter.name] = try eval(defaultValue, frame)
            } else {
                frame.variables[parameter.name] = .undefined("parameter '\(parameter.name)' was not provided")
            }
        }
        var out = ""
        try execute(macro.body, frame, &out)
        try budget.charge(building: .string(out))
        return .string(out)
    }
}

extension JinjaNode {
    var line: Int? {
        switch self {
        case .text, .macro: return nil
        case .output(_, let line), .ifChain(_, _, let line), .forLoop(_, _, _, _, _, let line), .set(_, _, let line),
             .setBlock(_, _, _, let line), .with(_, _, let line), .filterBlock(_, _, let line),
             .breakLoop(let line), .continueLoop(let line):
            return line
        }
    }
}
