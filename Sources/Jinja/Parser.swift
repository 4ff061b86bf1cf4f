// Parser for the Jinja subset this module implements; grammar and precedence follow jinja2/parser.py.

indirect enum JinjaExpr: Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpr])
    case tuple([JinjaExpr])
    case dict([(JinjaExpr, JinjaExpr)])
    case getattr(JinjaExpr, String)
    case getitem(JinjaExpr, JinjaExpr)
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?)
    case call(JinjaExpr, JinjaArguments)
    case filter(JinjaExpr, String, JinjaArguments, line: Int)
    case test(JinjaExpr, String, JinjaArguments, line: Int)
    case not(JinjaExpr)
    case negate(JinjaExpr)
    case plus(JinjaExpr)
    case binary(String, JinjaExpr, JinjaExpr)
    case and(JinjaExpr, JinjaExpr)
    case or(JinjaExpr, JinjaExpr)
    /// `a < b < c`: the first operand, then (operator, operand) pairs; operators include "in" and "notin".
    case compare(JinjaExpr, [(String, JinjaExpr)])
    /// `then if condition else otherwise`; a missing else gives undefined.
    case conditional(condition: JinjaExpr, then: JinjaExpr, otherwise: JinjaExpr?)
}

struct JinjaArguments: Sendable {
    var positional: [JinjaExpr] = []
    var keyword: [(String, JinjaExpr)] = []
}

struct JinjaFilterCall: Sendable {
    var name: String
    var arguments: JinjaArguments
    var line: Int
}

enum JinjaAssignTarget: Sendable {
    case name(String)
    case tuple([String])
    /// `ns.attr`
    case attribute(String, String)
}

indirect enum JinjaNode: Sendable {
    case text(String)
    case output(JinjaExpr, line: Int)
    case ifChain(branches: [(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    case forLoop(target: JinjaAssignTarget, iterable: JinjaExpr, condition: JinjaExpr?, body: [JinjaNode],
                 otherwise: [JinjaNode], line: Int)
    case set(JinjaAssignTarget, JinjaExpr, line: Int)
    /// `{% set x %}...{% endset %}`, optionally filtered.
    case setBlock(JinjaAssignTarget, filters: [JinjaFilterCall], body: [JinjaNode], line: Int)
    case macro(name: String, parameters: [(name: String, defaultValue: JinjaExpr?)], body: [JinjaNode])
    case with(assignments: [(String, JinjaExpr)], body: [JinjaNode], line: Int)
    case filterBlock(filters: [JinjaFilterCall], body: [JinjaNode], line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
}

/// Jinja's other builtin filters: valid Jinja, but not implemented here.
let jinjaUnsupportedFilters: Set<String> = [
    "batch", "center", "filesizeformat", "forceescape", "format", "groupby", "pprint", "random", "slice",
    "striptags", "truncate", "urlencode", "urlize", "wordwrap", "xmlattr",
]

struct JinjaParser {
    private let tokens: [JinjaToken]
    private var index = 0
    /// Block tags currently open, innermost last, for "never closed" messages.
    private var openBlocks: [(name: String, line: Int)] = []
    /// How deep the node being parsed sits in the tree: blocks, brackets, and each link of a chain
    /// such as `a + b + c` or `x|f|g` count a level. The validator and the interpreter recurse
    /// that deep, so parsing stops at `maxDepth` (`Limits.maxNestingDepth`).
    private var depth = 0
    private let maxDepth: Int

    init(tokens: [JinjaToken], maxDepth: Int) {
        self.tokens = tokens
        self.maxDepth = maxDepth
    }

    mutating func parseTemplate() throws -> [JinjaNode] {
        let (nodes, _) = try parseStatements(until: [])
        try JinjaValidator.check(nodes, soft: false)
        return nodes
    }

    // MARK: - Token stream

    private var current: JinjaToken { tokens[index] }
    private var nextToken: JinjaToken { tokens[min(index + 1, tokens.count - 1)] }

    private mutating func advance() -> JinjaToken {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func isName(_ value: String) -> Bool { current.kind == .name && current.text == value }
    private func isOp(_ value: String) -> Bool { current.kind == .op && current.text == value }

    private mutating func skipName(_ value: String) -> Bool {
        if isName(value) {
            _ = advance()
            return true
        }
        return false
    }

    private mutating func skipOp(_ value: String) -> Bool {
        if isOp(value) {
            _ = advance()
            return true
        }
        return false
    }

    /// Goes one level deeper; the caller puts `depth` back when it returns.
    private mutating func descend() throws {
        depth += 1
        if depth > maxDepth {
            throw TemplateError(.limit, "the template nests deeper than \(maxDepth) levels", line: current.line)
        }
    }

    private func fail(_ message: String, _ token: JinjaToken? = nil) -> TemplateError {
        TemplateError(.syntax, message, line: (token ?? current).line)
    }

    private mutating func expectOp(_ value: String) throws {
        guard skipOp(value) else { throw fail("expected '\(value)', got \(current)") }
    }

    private mutating func expectName() throws -> String {
        guard current.kind == .name else { throw fail("expected a name, got \(current)") }
        return advance().text
    }

    private mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else { throw fail("expected end of statement block '%}', got \(current)") }
        _ = advance()
    }

    // MARK: - Statements

    /// Parses nodes until a block tag whose name is in `endNames` (returned, with the stream on the
    /// token after that name) or the end of the template (only allowed when `endNames` is empty).
    private mutating func parseStatements(until endNames: Set<String>) throws -> ([JinjaNode], String?) {
        var nodes: [JinjaNode] = []
        while true {
            let token = current
            switch token.kind {
            case .data:
                nodes.append(.text(advance().text))
            case .variableBegin:
                _ = advance()
                let expr = try parseTuple()
                guard current.kind == .variableEnd else { throw fail("expected end of print statement '}}', got \(current)") }
                _ = advance()
                nodes.append(.output(expr, line: token.line))
            case .blockBegin:
                _ = advance()
                guard current.kind == .name else { throw fail("expected a statement name after '{%', got \(current)") }
                if endNames.contains(current.text) {
                    return (nodes, advance().text)
                }
                nodes.append(contentsOf: try parseStatement())
            case .eof:
                if endNames.isEmpty { return (nodes, nil) }
                let expected = endNames.sorted().map { "'\($0)'" }.joined(separator: " or ")
                let open = openBlocks.last.map { " The '\($0.name)' block opened on line \($0.line) is never closed." } ?? ""
                throw TemplateError(.syntax, "unexpected end of template, expected \(expected).\(open)",
                                        line: openBlocks.last?.line ?? token.line)
            default:
                throw fail("unexpected \(token)")
            }
        }
    }

    private mutating func parseBody(_ name: String, line: Int, until endNames: Set<String>) throws -> ([JinjaNode], String) {
        openBlocks.append((name, line))
        let outer = depth
        defer {
            openBlocks.removeLast()
            depth = outer
        }
        try descend()
        let (nodes, end) = try parseStatements(until: endNames)
        return (nodes, end!)
    }

    private mutating func parseStatement() throws -> [JinjaNode] {
        let token = advance()
        let line = token.line
        switch token.text {
        case "for": return [try parseFor(line: line)]
        case "if": return [try parseIf(line: line)]
        case "set": return [try parseSet(line: line)]
        case "macro": return [try parseMacro(line: line)]
        case "with": return [try parseWith(line: line)]
        case "filter": return [try parseFilterBlock(line: line)]
        case "break", "continue":
            guard openBlocks.contains(where: { $0.name == "for" }) else {
                throw fail("'\(token.text)' outside of a loop", token)
            }
            try expectBlockEnd()
            return [token.text == "break" ? .breakLoop(line: line) : .continueLoop(line: line)]
        case "generation":
            // transformers' AssistantTracker extension: only marks assistant text; renders its body.
            try expectBlockEnd()
            let (body, _) = try parseBody("generation", line: line, until: ["endgeneration"])
            try expectBlockEnd()
            return body
        case "extends", "include", "import", "from", "block", "call", "autoescape", "do", "trans", "pluralize":
            throw TemplateError(.unsupported, "the '\(token.text)' tag is not supported", line: line)
        default:
            if token.text.hasPrefix("end") || token.text == "else" || token.text == "elif" {
                let open = openBlocks.last.map { "; the innermost open block is '\($0.name)' (line \($0.line))" } ?? ""
                throw fail("unexpected '\(token.text)'\(open)", token)
            }
            throw fail("unknown tag '\(token.text)'", token)
        }
    }

    private mutating func parseFor(line: Int) throws -> JinjaNode {
        let target = try parseAssignTarget(extraEnd: ["in"], withNamespace: false)
        guard skipName("in") else { throw fail("expected 'in' in for loop, got \(current)") }
        let iterable = try parseTuple(withCondition: false, extraEnd: ["recursive"])
        var condition: JinjaExpr? = nil
        if skipName("if") { condition = try parseExpression() }
        if isName("recursive") {
            throw TemplateError(.unsupported, "recursive for loops are not supported", line: line)
        }
        try expectBlockEnd()
        var (body, end) = try parseBody("for", line: line, until: ["endfor", "else"])
        var otherwise: [JinjaNode] = []
        if end == "else" {
            try expectBlockEnd()
            (otherwise, end) = try parseBody("for", line: line, until: ["endfor"])
        }
        _ = end
        try expectBlockEnd()
        return .forLoop(target: target, iterable: iterable, condition: condition, body: body, otherwise: otherwise,
                        line: line)
    }

    private mutating func parseIf(line: Int) throws -> JinjaNode {
        var branches: [(JinjaExpr, [JinjaNode])] = []
        var otherwise: [JinjaNode] = []
        var condition = try parseTuple(withCondition: false)
        while true {
            try expectBlockEnd()
            let (body, end) = try parseBody("if", line: line, until: ["elif", "else", "endif"])
            branches.append((condition, body))
            if end == "elif" {
                condition = try parseTuple(withCondition: false)
                continue
            }
            if end == "else" {
                try expectBlockEnd()
                (otherwise, _) = try parseBody("if", line: line, until: ["endif"])
            }
            break
        }
        try expectBlockEnd()
        return .ifChain(branches: branches, otherwise: otherwise, line: line)
    }

    private mutating func parseSet(line: Int) throws -> JinjaNode {
        let target = try parseAssignTarget(extraEnd: [], withNamespace: true)
        if skipOp("=") {
            let value = try parseTuple()
            try expectBlockEnd()
            return .set(target, value, line: line)
        }
        var filters: [JinjaFilterCall] = []
        while skipOp("|") { filters.append(try parseFilterCall()) }
        try expectBlockEnd()
        let (body, _) = try parseBody("set", line: line, until: ["endset"])
        try expectBlockEnd()
        return .setBlock(target, filters: filters, body: body, line: line)
    }

    private mutating func parseMacro(line: Int) throws -> JinjaNode {
        let name = try expectName()
        try expectOp("(")
        var parameters: [(name: String, defaultValue: JinjaExpr?)] = []
        while !isOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let parameter = try expectName()
            var defaultValue: JinjaExpr? = nil
            if skipOp("=") {
                defaultValue = try parseExpression()
            } else if parameters.last?.defaultValue != nil {
                throw fail("non-default argument '\(parameter)' follows default argument")
            }
            parameters.append((parameter, defaultValue))
        }
        try expectOp(")")
        try expectBlockEnd()
        let (body, _) = try parseBody("macro", line: line, until: ["endmacro"])
        if current.kind == .name && current.text == name { _ = advance() }
        try expectBlockEnd()
        return .macro(name: name, parameters: parameters, body: body)
    }

    private mutating func parseWith(line: Int) throws -> JinjaNode {
        var assignments: [(String, JinjaExpr)] = []
        while current.kind != .blockEnd {
            if !assignments.isEmpty { try expectOp(",") }
            let name = try expectName()
            try expectOp("=")
            assignments.append((name, try parseExpression()))
        }
        try expectBlockEnd()
        let (body, _) = try parseBody("with", line: line, until: ["endwith"])
        try expectBlockEnd()
        return .with(assignments: assignments, body: body, line: line)
    }

    private mutating func parseFilterBlock(line: Int) throws -> JinjaNode {
        var filters: [JinjaFilterCall] = [try parseFilterCall()]
        while skipOp("|") { filters.append(try parseFilterCall()) }
        try expectBlockEnd()
        let (body, _) = try parseBody("filter", line: line, until: ["endfilter"])
        try expectBlockEnd()
        return .filterBlock(filters: filters, body: body, line: line)
    }

    private mutating func parseAssignTarget(extraEnd: Set<String>, withNamespace: Bool) throws -> JinjaAssignTarget {
        if withNamespace && current.kind == .name && nextToken.kind == .op && nextToken.text == "." {
            let object = advance().text
            _ = advance()
            let attribute = try expectName()
            return .attribute(object, attribute)
        }
        var names: [String] = []
        var isTuple = false
        let parenthesized = skipOp("(")
        while true {
            if !names.isEmpty {
                guard skipOp(",") else { break }
                isTuple = true
            }
            if current.kind == .blockEnd || isOp(")") || (current.kind == .name && extraEnd.contains(current.text)) {
                break
            }
            let token = current
            let name = try expectName()
            if ["true", "false", "none", "True", "False", "None"].contains(name) {
                throw fail("can't assign to '\(name)'", token)
            }
            names.append(name)
        }
        if parenthesized { try expectOp(")") }
        guard !names.isEmpty else { throw fail("expected an assignment target, got \(current)") }
        return isTuple || parenthesized && names.count > 1 ? .tuple(names) : .name(names[0])
    }

    // MARK: - Expressions

    /// Comma-separated expressions: one gives that expression, several a tuple.
    private mutating func parseTuple(withCondition: Bool = true, extraEnd: Set<String> = [],
                                     explicitParentheses: Bool = false) throws -> JinjaExpr {
        var items: [JinjaExpr] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if current.kind == .variableEnd || current.kind == .blockEnd || isOp(")")
                || (current.kind == .name && extraEnd.contains(current.text)) {
                break
            }
            items.append(withCondition ? try parseExpression() : try parseOr())
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let only = items.first { return only }
            if !explicitParentheses { throw fail("expected an expression, got \(current)") }
        }
        return .tuple(items)
    }

    private mutating func parseExpression() throws -> JinjaExpr {
        let outer = depth
        defer { depth = outer }
        var expr = try parseOr()
        while skipName("if") {
            try descend()
            let condition = try parseOr()
            var otherwise: JinjaExpr? = nil
            if skipName("else") { otherwise = try parseExpression() }
            expr = .conditional(condition: condition, then: expr, otherwise: otherwise)
        }
        return expr
    }

    /// A left-associative chain `operand (operator operand)*`: `operand` parses one, `takeOperator`
    /// consumes an operator and names it (nil when the chain ends), `combine` builds the node.
    private mutating func parseChain(_ operand: (inout JinjaParser) throws -> JinjaExpr,
                                     _ takeOperator: (inout JinjaParser) -> String?,
                                     _ combine: (String, JinjaExpr, JinjaExpr) -> JinjaExpr) throws -> JinjaExpr {
        let outer = depth
        defer { depth = outer }
        var left = try operand(&self)
        while let op = takeOperator(&self) {
            try descend()
            left = combine(op, left, try operand(&self))
        }
        return left
    }

    /// Consumes the current token when it is one of the operators `ops`, and returns it.
    private mutating func takeOp(_ ops: Set<String>) -> String? {
        current.kind == .op && ops.contains(current.text) ? advance().text : nil
    }

    private mutating func parseOr() throws -> JinjaExpr {
        try parseChain({ try $0.parseAnd() }, { $0.skipName("or") ? "or" : nil }) { .or($1, $2) }
    }

    private mutating func parseAnd() throws -> JinjaExpr {
        try parseChain({ try $0.parseNot() }, { $0.skipName("and") ? "and" : nil }) { .and($1, $2) }
    }

    private mutating func parseNot() throws -> JinjaExpr {
        guard skipName("not") else { return try parseCompare() }
        let outer = depth
        defer { depth = outer }
        try descend()
        return .not(try parseNot())
    }

    private mutating func parseCompare() throws -> JinjaExpr {
        let outer = depth
        defer { depth = outer }
        let first = try parseMath1()
        var rest: [(String, JinjaExpr)] = []
        while true {
            let op: String
            if let comparison = takeOp(["==", "!=", "<", "<=", ">", ">="]) {
                op = comparison
            } else if skipName("in") {
                op = "in"
            } else if isName("not") && nextToken.kind == .name && nextToken.text == "in" {
                _ = advance()
                _ = advance()
                op = "notin"
            } else {
                break
            }
            if rest.isEmpty { try descend() }
            rest.append((op, try parseMath1()))
        }
        return rest.isEmpty ? first : .compare(first, rest)
    }

    private mutating func parseMath1() throws -> JinjaExpr {
        try parseChain({ try $0.parseConcat() }, { $0.takeOp(["+", "-"]) }) { .binary($0, $1, $2) }
    }

    private mutating func parseConcat() throws -> JinjaExpr {
        try parseChain({ try $0.parseMath2() }, { $0.takeOp(["~"]) }) { .binary($0, $1, $2) }
    }

    private mutating func parseMath2() throws -> JinjaExpr {
        try parseChain({ try $0.parsePow() }, { $0.takeOp(["*", "/", "//", "%"]) }) { .binary($0, $1, $2) }
    }

    private mutating func parsePow() throws -> JinjaExpr {
        try parseChain({ try $0.parseUnary() }, { $0.takeOp(["**"]) }) { .binary($0, $1, $2) }
    }

    private mutating func parseUnary(withFilter: Bool = true) throws -> JinjaExpr {
        let outer = depth
        defer { depth = outer }
        var expr: JinjaExpr
        if let sign = takeOp(["-", "+"]) {
            try descend()
            let operand = try parseUnary(withFilter: false)
            expr = sign == "-" ? .negate(operand) : .plus(operand)
        } else {
            expr = try parsePrimary()
        }
        expr = try parsePostfix(expr)
        if withFilter { expr = try parseFilterExpr(expr) }
        return expr
    }

    private mutating func parsePrimary() throws -> JinjaExpr {
        let token = current
        let outer = depth
        defer { depth = outer }
        if token.kind == .op && ["(", "[", "{"].contains(token.text) { try descend() }
        switch token.kind {
        case .name:
            _ = advance()
            switch token.text {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.null)
            default: return .name(token.text)
            }
        case .string:
            var text = advance().text
            while current.kind == .string { text += advance().text }  // adjacent literals concatenate
            return .literal(.string(text))
        case .integer:
            _ = advance()
            return .literal(.int(token.intValue))
        case .float:
            _ = advance()
            return .literal(.double(token.doubleValue))
        case .op where token.text == "(":
            _ = advance()
            let expr = try parseTuple(explicitParentheses: true)
            try expectOp(")")
            return expr
        case .op where token.text == "[":
            _ = advance()
            var items: [JinjaExpr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return .list(items)
        case .op where token.text == "{":
            _ = advance()
            var pairs: [(JinjaExpr, JinjaExpr)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
            }
            try expectOp("}")
            return .dict(pairs)
        default:
            throw fail("unexpected \(token) in expression")
        }
    }

    private mutating func parsePostfix(_ start: JinjaExpr) throws -> JinjaExpr {
        let outer = depth
        defer { depth = outer }
        var expr = start
        while true {
            if isOp(".") || isOp("[") || isOp("(") { try descend() }
            if skipOp(".") {
                let token = current
                if token.kind == .name {
                    _ = advance()
                    expr = .getattr(expr, token.text)
                } else if token.kind == .integer {
                    _ = advance()
                    expr = .getitem(expr, .literal(.int(token.intValue)))
                } else {
                    throw fail("expected a name after '.', got \(token)")
                }
            } else if skipOp("[") {
                expr = try parseSubscript(expr)
            } else if isOp("(") {
                expr = .call(expr, try parseCallArguments())
            } else {
                return expr
            }
        }
    }

    private mutating func parseSubscript(_ object: JinjaExpr) throws -> JinjaExpr {
        var start: JinjaExpr? = nil
        if !isOp(":") {
            let index = try parseExpression()
            if skipOp("]") { return .getitem(object, index) }
            if isOp(",") {
                throw TemplateError(.unsupported, "tuple subscripts are not supported", line: current.line)
            }
            start = index
        }
        try expectOp(":")
        var stop: JinjaExpr? = nil
        var step: JinjaExpr? = nil
        if !isOp(":") && !isOp("]") { stop = try parseExpression() }
        if skipOp(":") {
            if !isOp("]") { step = try parseExpression() }
        }
        try expectOp("]")
        return .slice(object, start, stop, step)
    }

    private mutating func parseCallArguments() throws -> JinjaArguments {
        try expectOp("(")
        var arguments = JinjaArguments()
        while !isOp(")") {
            if !arguments.positional.isEmpty || !arguments.keyword.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            if isOp("*") || isOp("**") {
                throw TemplateError(.unsupported, "*args / **kwargs in calls are not supported", line: current.line)
            }
            if current.kind == .name && nextToken.kind == .op && nextToken.text == "=" {
                let key = advance().text
                _ = advance()
                arguments.keyword.append((key, try parseExpression()))
            } else {
                if !arguments.keyword.isEmpty { throw fail("positional argument follows keyword argument") }
                arguments.positional.append(try parseExpression())
            }
        }
        try expectOp(")")
        return arguments
    }

    private mutating func parseFilterExpr(_ start: JinjaExpr) throws -> JinjaExpr {
        let outer = depth
        defer { depth = outer }
        var expr = start
        while true {
            if isOp("|") || isName("is") || isOp("(") { try descend() }
            if skipOp("|") {
                let call = try parseFilterCall()
                expr = .filter(expr, call.name, call.arguments, line: call.line)
            } else if isName("is") {
                expr = try parseTest(expr)
            } else if isOp("(") {
                expr = .call(expr, try parseCallArguments())
            } else {
                return expr
            }
        }
    }

    /// A filter name and its arguments. Unknown names are reported by `validate`, as Jinja's
    /// compiler does, not here.
    private mutating func parseFilterCall() throws -> JinjaFilterCall {
        let token = current
        var name = try expectName()
        while isOp(".") {
            _ = advance()
            name += "." + (try expectName())
        }
        let arguments = isOp("(") ? try parseCallArguments() : JinjaArguments()
        return JinjaFilterCall(name: name, arguments: arguments, line: token.line)
    }

    private mutating func parseTest(_ subject: JinjaExpr) throws -> JinjaExpr {
        _ = advance()  // "is"
        let negated = skipName("not")
        let token = current
        // `true` / `false` / `none` after `is` are test names, not constants.
        var name = try expectName()
        while isOp(".") {
            _ = advance()
            name += "." + (try expectName())
        }
        var arguments = JinjaArguments()
        if isOp("(") {
            arguments = try parseCallArguments()
        } else if [.name, .string, .integer, .float].contains(current.kind) || isOp("[") || isOp("{") {
            if !(current.kind == .name && ["else", "or", "and"].contains(current.text)) {
                if isName("is") { throw fail("you cannot chain multiple tests with 'is'") }
                arguments.positional = [try parsePostfix(try parsePrimary())]
            }
        }
        let test = JinjaExpr.test(subject, name, arguments, line: token.line)
        return negated ? .not(test) : test
    }
}

/// Throws the error Jinja gives for a filter or test this interpreter lacks: a syntax error
/// for names Jinja does not know either, `.unsupported` for Jinja builtins left out here.
func jinjaCheckFilter(_ name: String, line: Int?) throws {
    if JinjaInterpreter.filters[name] != nil { return }
    if jinjaUnsupportedFilters.contains(name) {
        throw TemplateError(.unsupported, "the '\(name)' filter is not supported", line: line)
    }
    throw TemplateError(.syntax, "unknown filter '\(name)'", line: line)
}

func jinjaCheckTest(_ name: String, line: Int?) throws {
    if JinjaInterpreter.tests[name] != nil { return }
    throw TemplateError(.syntax, "unknown test '\(name)'", line: line)
}

/// Jinja's compiler rejects unknown filters and tests when it compiles the template, except
/// inside `if` statements and `a if b else c` expressions ("soft" frames), where the error
/// waits until the filter is actually used. Loop, macro, `with` and block-`set` bodies start
/// hard frames again. It recurses as deep as the tree, which the parser keeps within
/// `Limits.maxNestingDepth`.
enum JinjaValidator {
    static func check(_ nodes: [JinjaNode], soft: Bool) throws {
        for node in nodes { try check(node, soft: soft) }
    }

    static func check(_ node: JinjaNode, soft: Bool) throws {
        switch node {
        case .text, .breakLoop, .continueLoop: break
        case .output(let expr, _): try check(expr, soft: soft)
        case .ifChain(let branches, let otherwise, _):
            for (condition, body) in branches {
                try check(condition, soft: true)
                try check(body, soft: true)
            }
            try check(otherwise, soft: true)
        case .forLoop(let target, let iterable, let condition, let body, let otherwise, _):
            _ = target
            try check(iterable, soft: soft)
            if let condition { try check(condition, soft: false) }
            try check(body, soft: false)
            try check(otherwise, soft: soft)
        case .set(_, let value, _): try check(value, soft: soft)
        case .setBlock(_, let filters, let body, _):
            for filter in filters { try checkFilter(filter, soft: soft) }
            try check(body, soft: false)
        case .macro(_, let parameters, let body):
            for parameter in parameters { if let value = parameter.defaultValue { try check(value, soft: false) } }
            try check(body, soft: false)
        case .with(let assignments, let body, _):
            for (_, value) in assignments { try check(value, soft: soft) }
            try check(body, soft: false)
        case .filterBlock(let filters, let body, _):
            for filter in filters { try checkFilter(filter, soft: soft) }
            try check(body, soft: false)
        }
    }

    private static func checkFilter(_ filter: JinjaFilterCall, soft: Bool) throws {
        if !soft { try jinjaCheckFilter(filter.name, line: filter.line) }
        try check(filter.arguments, soft: soft)
    }

    private static func check(_ arguments: JinjaArguments, soft: Bool) throws {
        for value in arguments.positional { try check(value, soft: soft) }
        for (_, value) in arguments.keyword { try check(value, soft: soft) }
    }

    static func check(_ expr: JinjaExpr, soft: Bool) throws {
        switch expr {
        case .literal, .name: break
        case .list(let items), .tuple(let items): for item in items { try check(item, soft: soft) }
        case .dict(let pairs):
            for (key, value) in pairs {
                try check(key, soft: soft)
                try check(value, soft: soft)
            }
        case .getattr(let object, _): try check(object, soft: soft)
        case .getitem(let object, let key):
            try check(object, soft: soft)
            try check(key, soft: soft)
        case .slice(let object, let start, let stop, let step):
            try check(object, soft: soft)
            for part in [start, stop, step] { if let part { try check(part, soft: soft) } }
        case .call(let callee, let arguments):
            try check(callee, soft: soft)
            try check(arguments, soft: soft)
        case .filter(let value, let name, let arguments, let line):
            try check(value, soft: soft)
            try checkFilter(JinjaFilterCall(name: name, arguments: arguments, line: line), soft: soft)
        case .test(let value, let name, let arguments, let line):
            try check(value, soft: soft)
            if !soft { try jinjaCheckTest(name, line: line) }
            try check(arguments, soft: soft)
        case .not(let value), .negate(let value), .plus(let value): try check(value, soft: soft)
        case .binary(_, let left, let right), .and(let left, let right), .or(let left, let right):
            try check(left, soft: soft)
            try check(right, soft: soft)
        case .compare(let first, let rest):
            try check(first, soft: soft)
            for (_, value) in rest { try check(value, soft: soft) }
        case .conditional(let condition, let then, let otherwise):
            try check(condition, soft: true)
            try check(then, soft: true)
            if let otherwise { try check(otherwise, soft: true) }
        }
    }
}
