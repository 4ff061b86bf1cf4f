import Foundation

// Python's string methods, which the filters and methods of templates follow.

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

/// The scalar offsets of `needle`'s non-overlapping occurrences in `hay`, left to right, at most `limit` of them
/// (all when negative): Python's literal code-point matching, for `find`, `count`, `replace`, `split` and `in`
/// (Knuth–Morris–Pratt, so the work stays linear whatever the strings). An empty needle occurs nowhere here.
func pythonOccurrences(of needle: [Unicode.Scalar], in hay: [Unicode.Scalar], limit: Int = -1) -> [Int] {
    guard !needle.isEmpty, needle.count <= hay.count, limit != 0 else { return [] }
    var failure = [Int](repeating: 0, count: needle.count)   // longest proper border of needle[...i]
    var k = 0
    for i in 1..<needle.count {
        while k > 0 && needle[i] != needle[k] { k = failure[k - 1] }
        if needle[i] == needle[k] { k += 1 }
        failure[i] = k
    }
    var found: [Int] = []
    k = 0
    for (i, c) in hay.enumerated() {
        while k > 0 && c != needle[k] { k = failure[k - 1] }
        if c == needle[k] { k += 1 }
        if k == needle.count {
            found.append(i + 1 - k)
            if found.count == limit { break }
            k = 0   // the next match starts after this one
        }
    }
    return found
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
    if let sep {
        var start = 0
        for i in pythonOccurrences(of: sep, in: scalars, limit: maxSplit) {
            parts.append(string(scalars[start..<i]))
            start = i + sep.count
        }
        parts.append(string(scalars[start...]))
    } else {
        var i = 0, splits = 0
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

/// `s.replace(old, new, count)`; `check` sees the number of replacements before the result is built.
func pythonReplace(_ s: String, _ old: String, _ new: String, count: Int, check: (Int) throws -> Void) rethrows -> String {
    if old.isEmpty {
        let places = s.unicodeScalars.count + 1
        try check(count < 0 ? places : min(count, places))
        return pythonReplaceEmpty(s, new, count: count)
    }
    let scalars = Array(s.unicodeScalars), oldLength = old.unicodeScalars.count
    let occurrences = pythonOccurrences(of: Array(old.unicodeScalars), in: scalars, limit: count)
    try check(occurrences.count)
    var result = String.UnicodeScalarView()
    var start = 0
    for i in occurrences {
        result.append(contentsOf: scalars[start..<i])
        result.append(contentsOf: new.unicodeScalars)
        start = i + oldLength
    }
    result.append(contentsOf: scalars[start...])
    return String(result)
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

/// `str.format(*args, **kwargs)` with `{}`, `{0}`, `{name}`, `{name.attr}`-less fields and `{{` / `}}`,
/// within the string limit; format specs and conversions are not supported. As in Python, a field that
/// is not all digits (`{-1}`) names a keyword argument.
func pythonFormat(_ format: String, _ arguments: JinjaCallArguments, budget: RenderBudget) throws -> String {
    var out = BoundedText(budget)
    var chars = Array(format)[...]
    var autoIndex = 0
    while let c = chars.popFirst() {
        if c == "}" {
            guard chars.first == "}" else { throw TemplateError("Single '}' encountered in format string") }
            chars.removeFirst()
            try out.append("}")
            continue
        }
        guard c == "{" else {
            try out.append(String(c))
            continue
        }
        if chars.first == "{" {
            chars.removeFirst()
            try out.append("{")
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
        } else if field.allSatisfy({ ("0"..."9").contains($0) }) {
            guard let index = Int(field), index < arguments.positional.count else {
                throw TemplateError("Replacement index \(field) out of range")
            }
            value = arguments.positional[index]
        } else {
            guard let named = arguments.keyword.first(where: { $0.0 == field })?.1 else {
                throw TemplateError("KeyError: '\(field)'")
            }
            value = named
        }
        try out.append(str: value)
    }
    return out.text
}
