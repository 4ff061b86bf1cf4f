// Tokenizer for the Jinja subset this module implements, following jinja2/lexer.py with
// trim_blocks=True and lstrip_blocks=True (the settings transformers uses):
//  - `{%-` / `{{-` / `{#-` strip all whitespace before the tag, `-%}` / `-}}` / `-#}` after it;
//  - trim_blocks: a block or comment tag eats one newline right after it (`+%}` keeps it);
//  - lstrip_blocks: spaces/tabs from the start of a line up to a block or comment tag are
//    dropped (`{%+` keeps them); never for `{{`;
//  - one trailing newline of the source is dropped and \r\n / \r become \n.

struct JinjaToken: CustomStringConvertible {
    enum Kind: Equatable {
        case data, variableBegin, variableEnd, blockBegin, blockEnd
        case name, string, integer, float, op
        case eof
    }

    var kind: Kind
    /// Data text, name, operator, or the unescaped string value.
    var text: String = ""
    var intValue: Int = 0
    var doubleValue: Double = 0
    var line: Int

    var description: String {
        switch kind {
        case .data: return "template data"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "end of print statement"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "end of statement block"
        case .name: return "'\(text)'"
        case .string: return "string"
        case .integer, .float: return "number"
        case .op: return "'\(text)'"
        case .eof: return "end of template"
        }
    }
}

struct JinjaLexer {
    private let s: [Unicode.Scalar]
    /// How deep brackets may nest (`Limits.maxNestingDepth`).
    private let maxDepth: Int
    private var pos = 0
    private var line = 1
    private var lineStarting = true
    private var tokens: [JinjaToken] = []

    init(source: String, maxDepth: Int) {
        self.maxDepth = maxDepth
        // Normalise newlines like Jinja and drop one trailing newline (keep_trailing_newline=False).
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(source.unicodeScalars.count)
        var previousCR = false
        for c in source.unicodeScalars {
            if c == "\r" {
                scalars.append("\n")
                previousCR = true
                continue
            }
            if c == "\n" && previousCR {
                previousCR = false
                continue
            }
            previousCR = false
            scalars.append(c)
        }
        if scalars.last == "\n" { scalars.removeLast() }
        s = scalars
    }

    mutating func tokenize() throws -> [JinjaToken] {
        while pos < s.count {
            guard let open = nextTagOpen(from: pos) else {
                emitData(pos, s.count)
                pos = s.count
                break
            }
            let kindChar = s[open + 1]
            var after = open + 2
            var sign: Unicode.Scalar? = nil
            if after < s.count, s[after] == "-" || s[after] == "+" {
                sign = s[after]
                after += 1
            }
            // Whitespace control on the text before the tag.
            var textEnd = open
            if sign == "-" {
                while textEnd > pos && isPythonWhitespace(s[textEnd - 1]) { textEnd -= 1 }
            } else if sign != "+" && kindChar != "{" {
                // lstrip_blocks: strip when only spaces/tabs separate the tag from a line start.
                var lineStart = open
                while lineStart > pos && s[lineStart - 1] != "\n" { lineStart -= 1 }
                if lineStart > pos || lineStarting {
                    if lineStart < open && (lineStart..<open).allSatisfy({ isPythonWhitespace(s[$0]) }) {
                        textEnd = lineStart
                    }
                }
            }
            emitData(pos, textEnd)
            countLines(textEnd, open)
            pos = after
            switch kindChar {
            case "#": try lexComment()
            case "%":
                if try !lexRawBlock() {
                    tokens.append(JinjaToken(kind: .blockBegin, line: line))
                    try lexTag(block: true)
                }
            default:
                tokens.append(JinjaToken(kind: .variableBegin, line: line))
                try lexTag(block: false)
            }
        }
        tokens.append(JinjaToken(kind: .eof, line: line))
        return tokens
    }

    // MARK: - Helpers

    private func nextTagOpen(from start: Int) -> Int? {
        var i = start
        while i + 1 < s.count {
            if s[i] == "{", s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" { return i }
            i += 1
        }
        return nil
    }

    private mutating func emitData(_ from: Int, _ to: Int) {
        guard from < to else { return }
        var text = ""
        text.unicodeScalars.append(contentsOf: s[from..<to])
        tokens.append(JinjaToken(kind: .data, text: text, line: line))
        countLines(from, to)
    }

    private mutating func countLines(_ from: Int, _ to: Int) {
        guard from < to else { return }
        for i in from..<to where s[i] == "\n" { line += 1 }
    }

    private func matches(_ literal: String, at i: Int) -> Bool {
        var j = i
        for c in literal.unicodeScalars {
            guard j < s.count, s[j] == c else { return false }
            j += 1
        }
        return true
    }

    /// Consumes the end of a tag (`%}`/`#}` with its modifiers) starting at `i`, which is
    /// known to match; sets `pos` past it and updates `lineStarting`.
    private mutating func consumeTagEnd(at i: Int, closer: String, trimNewline: Bool) {
        let start = i
        var j = i
        if s[j] == "-" {
            j += 1 + closer.unicodeScalars.count
            while j < s.count && isPythonWhitespace(s[j]) { j += 1 }
        } else if s[j] == "+" {
            j += 1 + closer.unicodeScalars.count
        } else {
            j += closer.unicodeScalars.count
            if trimNewline && j < s.count && s[j] == "\n" { j += 1 }
        }
        countLines(start, j)
        lineStarting = s[j - 1] == "\n"
        pos = j
    }

    private mutating func lexComment() throws {
        let startLine = line
        var i = pos
        while i < s.count {
            if matches("+#}", at: i) || matches("-#}", at: i) || matches("#}", at: i) {
                countLines(pos, i)
                consumeTagEnd(at: i, closer: "#}", trimNewline: true)
                return
            }
            i += 1
        }
        throw TemplateError(.syntax, "missing end of comment tag '#}'", line: startLine)
    }

    /// `{% raw %}...{% endraw %}`: the body is data, untouched. Returns false when the block
    /// tag at `pos` is not `raw`.
    private mutating func lexRawBlock() throws -> Bool {
        var i = pos
        while i < s.count && isPythonWhitespace(s[i]) { i += 1 }
        guard matches("raw", at: i) else { return false }
        i += 3
        while i < s.count && isPythonWhitespace(s[i]) { i += 1 }
        // The opening raw tag takes no trim_blocks newline (as in Jinja's root_raw_re).
        if matches("-%}", at: i) {
            i += 3
            while i < s.count && isPythonWhitespace(s[i]) { i += 1 }
        } else if matches("%}", at: i) {
            i += 2
        } else {
            return false
        }
        let startLine = line
        countLines(pos, i)
        pos = i
        lineStarting = s[i - 1] == "\n"
        var j = pos
        while j + 1 < s.count {
            if s[j] == "{" && s[j + 1] == "%" {
                var k = j + 2
                var sign: Unicode.Scalar? = nil
                if k < s.count, s[k] == "-" || s[k] == "+" {
                    sign = s[k]
                    k += 1
                }
                while k < s.count && isPythonWhitespace(s[k]) { k += 1 }
                if matches("endraw", at: k) {
                    k += 6
                    while k < s.count && isPythonWhitespace(s[k]) { k += 1 }
                    if matches("+%}", at: k) || matches("-%}", at: k) || matches("%}", at: k) {
                        var textEnd = j
                        if sign == "-" {
                            while textEnd > pos && isPythonWhitespace(s[textEnd - 1]) { textEnd -= 1 }
                        } else if sign != "+" {
                            var lineStart = j
                            while lineStart > pos && s[lineStart - 1] != "\n" { lineStart -= 1 }
                            if (lineStart > pos || lineStarting) && lineStart < j
                                && (lineStart..<j).allSatisfy({ isPythonWhitespace(s[$0]) }) {
                                textEnd = lineStart
                            }
                        }
                        emitData(pos, textEnd)
                        countLines(textEnd, k)
                        consumeTagEnd(at: k, closer: "%}", trimNewline: true)
                        return true
                    }
                }
            }
            j += 1
        }
        throw TemplateError(.syntax, "missing '{% endraw %}' for '{% raw %}'", line: startLine)
    }

    /// Tokens inside `{{ ... }}` or `{% ... %}` up to and including the end tag.
    private mutating func lexTag(block: Bool) throws {
        let closer = block ? "%}" : "}}"
        let startLine = line
        var brackets: [Unicode.Scalar] = []
        while true {
            while pos < s.count && isPythonWhitespace(s[pos]) {
                if s[pos] == "\n" { line += 1 }
                pos += 1
            }
            guard pos < s.count else {
                throw TemplateError(
                    .syntax, "unexpected end of template: '\(block ? "{%" : "{{")' tag opened here is never closed "
                        + "with '\(closer)'", line: startLine)
            }
            if brackets.isEmpty {
                if matches("-" + closer, at: pos) || (block && matches("+" + closer, at: pos)) || matches(closer, at: pos) {
                    tokens.append(JinjaToken(kind: block ? .blockEnd : .variableEnd, line: line))
                    consumeTagEnd(at: pos, closer: closer, trimNewline: block)
                    return
                }
            }
            let c = s[pos]
            if ("0"..."9").contains(c) {
                lexNumber()
            } else if c == "_" || c.properties.isAlphabetic {
                var j = pos
                while j < s.count && (s[j] == "_" || s[j].properties.isAlphabetic || ("0"..."9").contains(s[j])) { j += 1 }
                var name = ""
                name.unicodeScalars.append(contentsOf: s[pos..<j])
                tokens.append(JinjaToken(kind: .name, text: name, line: line))
                pos = j
            } else if c == "'" || c == "\"" {
                try lexString()
            } else {
                let ops = ["//", "**", "==", "!=", ">=", "<=",
                           "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|",
                           ",", ";"]
                guard let op = ops.first(where: { matches($0, at: pos) }) else {
                    throw TemplateError(.syntax, "unexpected character '\(c)' in tag", line: line)
                }
                switch op {
                case "(", "[", "{":
                    guard brackets.count < maxDepth else {
                        throw TemplateError(.limit, "brackets nest deeper than \(maxDepth) levels", line: line)
                    }
                    brackets.append(op == "(" ? ")" : op == "[" ? "]" : "}")
                case ")", "]", "}":
                    guard let expected = brackets.popLast() else {
                        throw TemplateError(.syntax, "unexpected '\(op)'", line: line)
                    }
                    if String(expected) != op {
                        throw TemplateError(.syntax, "unexpected '\(op)', expected '\(expected)'", line: line)
                    }
                default: break
                }
                tokens.append(JinjaToken(kind: .op, text: op, line: line))
                pos += op.unicodeScalars.count
            }
        }
    }

    private func isDigit(_ i: Int) -> Bool { i < s.count && ("0"..."9").contains(s[i]) }

    /// Digits with Python-style `_` separators between them.
    private func digitsEnd(from start: Int) -> Int {
        var j = start
        while isDigit(j) || (j < s.count && s[j] == "_" && j > start && isDigit(j + 1)) { j += 1 }
        return j
    }

    private mutating func lexNumber() {
        var j = digitsEnd(from: pos)
        var isFloat = false
        if j < s.count, s[j] == ".", isDigit(j + 1) {
            j = digitsEnd(from: j + 1)
            isFloat = true
        }
        if j < s.count, s[j] == "e" || s[j] == "E" {
            var k = j + 1
            if k < s.count, s[k] == "+" || s[k] == "-" { k += 1 }
            if isDigit(k) {
                j = digitsEnd(from: k)
                isFloat = true
            }
        }
        var text = ""
        text.unicodeScalars.append(contentsOf: s[pos..<j])
        text.removeAll { $0 == "_" }
        if isFloat {
            tokens.append(JinjaToken(kind: .float, text: text, doubleValue: Double(text) ?? 0, line: line))
        } else if let value = Int(text) {
            tokens.append(JinjaToken(kind: .integer, text: text, intValue: value, line: line))
        } else {
            tokens.append(JinjaToken(kind: .float, text: text, doubleValue: Double(text) ?? 0, line: line))
        }
        pos = j
    }

    /// A quoted string with Python's escapes (Jinja decodes them with "unicode-escape").
    private mutating func lexString() throws {
        let quote = s[pos]
        let startLine = line
        var j = pos + 1
        var out = String.UnicodeScalarView()
        while true {
            guard j < s.count else {
                throw TemplateError(.syntax, "unterminated string literal", line: startLine)
            }
            let c = s[j]
            if c == quote { break }
            if c == "\n" { line += 1 }
            if c != "\\" {
                out.append(c)
                j += 1
                continue
            }
            guard j + 1 < s.count else {
                throw TemplateError(.syntax, "unterminated string literal", line: startLine)
            }
            let e = s[j + 1]
            j += 2
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "\n": line += 1  // backslash-newline: line continuation
            case "x", "u", "U":
                let width = e == "x" ? 2 : (e == "u" ? 4 : 8)
                guard j + width <= s.count,
                      let value = UInt32(String(String.UnicodeScalarView(s[j..<j + width])), radix: 16),
                      let scalar = Unicode.Scalar(value)
                else {
                    throw TemplateError(.syntax, "bad \\\(e) escape in string literal", line: line)
                }
                out.append(scalar)
                j += width
            case "0"..."7":
                var value = e.value - 48
                var k = 0
                while k < 2, j < s.count, ("0"..."7").contains(s[j]) {
                    value = value * 8 + (s[j].value - 48)
                    j += 1
                    k += 1
                }
                out.append(Unicode.Scalar(value)!)
            default:
                // Unknown escapes stay as written.
                out.append("\\")
                out.append(e)
            }
        }
        tokens.append(JinjaToken(kind: .string, text: String(out), line: startLine))
        pos = j + 1
    }
}
