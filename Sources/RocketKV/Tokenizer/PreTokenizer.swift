/// Splits text into words before byte-level BPE, the way llama.cpp does for a `tokenizer.ggml.pre` name.
///
/// llama.cpp describes each pre-tokenizer as a list of regexes applied in turn: each one splits every
/// piece left by the previous one, and text between matches stays as pieces of its own. The regexes
/// are implemented here as hand-written scanners over Unicode scalars that reproduce llama.cpp's
/// results, including its quirks:
/// - character classes come from the general category (\p{L} = L*, \p{N} = N*, \p{P} = P*), and \s is
///   the Unicode White_Space set; combining marks (M*) are neither letters nor numbers;
/// - a piece's end acts as the end of text for lookaheads such as `\s+(?!\S)`;
/// - the GPT-2 contractions (`'s`, `'t`, ...) are case-sensitive, the Llama 3 ones are not (ASCII only);
/// - the starcoder family (`smollm`, ...) first isolates every digit, so a space before a number
///   becomes a word of its own.
public struct PreTokenizer: Sendable, Equatable, CustomStringConvertible {
    /// The regex families llama.cpp uses.
    public enum Kind: String, Sendable, CaseIterable {
        /// `[\p{P}$+<=>^~|]+`, then GPT-2, then `\p{N}+`, then `[0-9][0-9][0-9]`.
        case `default`
        /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
        case gpt2
        /// `\p{N}` (every digit alone), then GPT-2 (starcoder, smollm, refact, command-r, ...).
        case starcoder
        /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
        case llama3
        /// The Llama 3 regex with `\p{N}` (single digits) instead of `\p{N}{1,3}`.
        case qwen2
        /// `[\p{P}$+<=>^~|`]+`, then GPT-2, then `[0-9][0-9][0-9]`.
        case falcon
    }

    /// The `tokenizer.ggml.pre` name this was made from.
    public let name: String
    public let kind: Kind
    /// Whether a word found whole in the vocabulary is emitted without running merges (llama.cpp's
    /// `ignore_merges`, set for the Llama 3 names).
    public let ignoresMerges: Bool
    /// Whether llama.cpp adds BOS for this name when the file has no `tokenizer.ggml.add_bos_token`.
    public let addsBOSByDefault: Bool

    public var description: String { name.isEmpty ? kind.rawValue : name }

    /// The pre-tokenizer llama.cpp uses for `name` (`""` means the key is missing: llama.cpp then
    /// falls back to `default`). Throws `TokenizerError` for names it does not know.
    public init(name: String) throws {
        self.name = name
        var ignoresMerges = false
        var addsBOS = false
        switch name {
        case "", "default":
            kind = .default
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
            kind = .llama3
            ignoresMerges = true
            addsBOS = true
        case "dbrx", "smaug-bpe":
            kind = .llama3
        case "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4",
             "gigachat", "a.x-4.0", "mellum":
            kind = .gpt2
        case "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2":
            kind = .starcoder
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open":
            kind = .qwen2
        case "falcon":
            kind = .falcon
        default:
            throw TokenizerError("unknown pre-tokenizer type '\(name)' (tokenizer.ggml.pre)")
        }
        self.ignoresMerges = ignoresMerges
        self.addsBOSByDefault = addsBOS
    }

    /// The pre-tokenizer of a family, as llama.cpp's canonical name for it.
    public init(kind: Kind) {
        let names: [Kind: String] = [.default: "default", .gpt2: "gpt-2", .starcoder: "starcoder",
                                     .llama3: "llama-bpe", .qwen2: "qwen2", .falcon: "falcon"]
        try! self.init(name: names[kind]!)
    }

    /// The words of `text` (not byte-encoded).
    public func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        let cps = scalars.map { $0.value }
        let cls = cps.map { CharClass.of($0) }
        let ends = boundaries(cps, cls)
        var words: [String] = []
        var start = 0
        for end in ends {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[start..<end])
            words.append(String(view))
            start = end
        }
        return words
    }

    // MARK: - Splitting

    private enum Stage {
        case gpt2
        case llama3(maxDigits: Int)
        case eachNumber          // \p{N}
        case numberRuns          // \p{N}+
        case asciiDigitTriples   // [0-9][0-9][0-9]
        case punctuationRuns(backtick: Bool)  // [\p{P}$+<=>^~|]+ (with ` for falcon)
    }

    private var stages: [Stage] {
        switch kind {
        case .default: return [.punctuationRuns(backtick: false), .gpt2, .numberRuns, .asciiDigitTriples]
        case .gpt2: return [.gpt2]
        case .starcoder: return [.eachNumber, .gpt2]
        case .llama3: return [.llama3(maxDigits: 3)]
        case .qwen2: return [.llama3(maxDigits: 1)]
        case .falcon: return [.punctuationRuns(backtick: true), .gpt2, .asciiDigitTriples]
        }
    }

    /// End offsets (in scalars) of the words of the scalars `cps` with classes `cls`.
    func boundaries(_ cps: [UInt32], _ cls: [CharClass]) -> [Int] {
        precondition(cps.count == cls.count)
        guard !cps.isEmpty else { return [] }
        var ends = [cps.count]
        cps.withUnsafeBufferPointer { cp in
            cls.withUnsafeBufferPointer { cl in
                for stage in stages {
                    var sink = PieceSink()
                    sink.ends.reserveCapacity(ends.count * 4)
                    var lo = 0
                    for hi in ends {
                        sink.previous = lo
                        let span = Span(cps: cp, cls: cl, lo: lo, hi: hi)
                        switch stage {
                        case .gpt2: span.gpt2(&sink)
                        case .llama3(let maxDigits): span.llama3(maxDigits: maxDigits, &sink)
                        case .eachNumber: span.eachNumber(&sink)
                        case .numberRuns: span.numberRuns(&sink)
                        case .asciiDigitTriples: span.asciiDigitTriples(&sink)
                        case .punctuationRuns(let backtick): span.punctuationRuns(backtick: backtick, &sink)
                        }
                        sink.cut(hi)
                        lo = hi
                    }
                    ends = sink.ends
                }
            }
        }
        return ends
    }
}

/// Collects piece ends, dropping empty pieces.
private struct PieceSink {
    var ends: [Int] = []
    var previous = 0

    @inline(__always)
    mutating func cut(_ end: Int) {
        if end > previous { ends.append(end) }
        previous = end
    }
}

/// One piece being split: scalars `lo..<hi`; everything outside reads as "no character".
private struct Span {
    let cps: UnsafeBufferPointer<UInt32>
    let cls: UnsafeBufferPointer<CharClass>
    let lo: Int
    let hi: Int

    @inline(__always) func cls(_ i: Int) -> CharClass { i < hi ? cls[i] : [] }
    @inline(__always) func isNewline(_ i: Int) -> Bool { i < hi && (cps[i] == 0x0A || cps[i] == 0x0D) }

    private static let apostrophe: UInt32 = 0x27
    private static let space: UInt32 = 0x20

    /// Length of a contraction (`'s`, `'t`, `'m`, `'d`, `'re`, `'ve`, `'ll`) at `pos`, or 0.
    @inline(__always)
    func contraction(at pos: Int, ignoringCase: Bool) -> Int {
        guard cps[pos] == Span.apostrophe, pos + 1 < hi else { return 0 }
        func lower(_ c: UInt32) -> UInt32 { ignoringCase && (0x41...0x5A).contains(c) ? c + 0x20 : c }
        let a = lower(cps[pos + 1])
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return 2 }  // s t m d
        guard pos + 2 < hi else { return 0 }
        let b = lower(cps[pos + 2])
        if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return 3 }  // re ve ll
        return 0
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    func gpt2(_ sink: inout PieceSink) {
        var pos = lo
        while pos < hi {
            let n = contraction(at: pos, ignoringCase: false)
            if n > 0 {
                pos += n
                sink.cut(pos)
                continue
            }
            // An optional leading space belongs to the letter / number / other run after it.
            let lead = cps[pos] == Span.space ? 1 : 0
            let next = cls(pos + lead)
            if next.contains(.letter) {
                pos += lead
                while cls(pos).contains(.letter) { pos += 1 }
                sink.cut(pos)
                continue
            }
            if next.contains(.number) {
                pos += lead
                while cls(pos).contains(.number) { pos += 1 }
                sink.cut(pos)
                continue
            }
            if next.isDisjoint(with: .wordLike) && next.contains(.present) {
                pos += lead
                while cls(pos).isDisjoint(with: .wordLike) && cls(pos).contains(.present) { pos += 1 }
                sink.cut(pos)
                continue
            }
            var spaces = 0
            while cls(pos + spaces).contains(.whitespace) { spaces += 1 }
            if spaces > 1 && pos + spaces < hi {
                // \s+(?!\S): leave the last whitespace to prefix the next word.
                pos += spaces - 1
                sink.cut(pos)
                continue
            }
            if spaces > 0 {
                pos += spaces
                sink.cut(pos)
                continue
            }
            pos += 1
            sink.cut(pos)
        }
    }

    /// The Llama 3 regex; `maxDigits` 3 for Llama 3 (`\p{N}{1,3}`), 1 for Qwen2 (`\p{N}`).
    func llama3(maxDigits: Int, _ sink: inout PieceSink) {
        var pos = lo
        while pos < hi {
            let n = contraction(at: pos, ignoringCase: true)
            if n > 0 {
                pos += n
                sink.cut(pos)
                continue
            }
            let here = cls[pos]
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !isNewline(pos) && !here.contains(.number) && (here.contains(.letter) || cls(pos + 1).contains(.letter)) {
                pos += 1
                while cls(pos).contains(.letter) { pos += 1 }
                sink.cut(pos)
                continue
            }
            // \p{N}{1,maxDigits}
            if here.contains(.number) {
                var start = pos
                while cls(pos).contains(.number) {
                    pos += 1
                    if pos - start >= maxDigits {
                        sink.cut(pos)
                        start = pos
                    }
                }
                sink.cut(pos)
                continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let lead = cps[pos] == Span.space ? 1 : 0
            if cls(pos + lead).isDisjoint(with: .wordLike) {
                pos += lead
                while cls(pos).isDisjoint(with: .wordLike) && cls(pos).contains(.present) { pos += 1 }
                while isNewline(pos) { pos += 1 }
                sink.cut(pos)
                continue
            }
            var spaces = 0
            var afterLastNewline = -1
            while cls(pos + spaces).contains(.whitespace) {
                if isNewline(pos + spaces) { afterLastNewline = pos + spaces + 1 }
                spaces += 1
            }
            // \s*[\r\n]+
            if afterLastNewline >= 0 {
                pos = afterLastNewline
                sink.cut(pos)
                continue
            }
            // \s+(?!\S)
            if spaces > 1 && pos + spaces < hi {
                pos += spaces - 1
                sink.cut(pos)
                continue
            }
            // \s+
            if spaces > 0 {
                pos += spaces
                sink.cut(pos)
                continue
            }
            pos += 1
            sink.cut(pos)
        }
    }

    /// `\p{N}`: every number character is a piece.
    func eachNumber(_ sink: inout PieceSink) {
        for i in lo..<hi where cls[i].contains(.number) {
            sink.cut(i)
            sink.cut(i + 1)
        }
    }

    /// `\p{N}+`
    func numberRuns(_ sink: inout PieceSink) {
        var i = lo
        while i < hi {
            guard cls[i].contains(.number) else { i += 1; continue }
            var j = i + 1
            while j < hi && cls[j].contains(.number) { j += 1 }
            sink.cut(i)
            sink.cut(j)
            i = j
        }
    }

    /// `[0-9][0-9][0-9]`: ASCII digits in threes from the left of each run.
    func asciiDigitTriples(_ sink: inout PieceSink) {
        @inline(__always) func digit(_ i: Int) -> Bool { (0x30...0x39).contains(cps[i]) }
        var i = lo
        while i + 3 <= hi {
            if digit(i) && digit(i + 1) && digit(i + 2) {
                sink.cut(i)
                sink.cut(i + 3)
                i += 3
            } else {
                i += 1
            }
        }
    }

    /// `[\p{P}\$\+<=>\^~\|]+` (plus the backtick for falcon).
    func punctuationRuns(backtick: Bool, _ sink: inout PieceSink) {
        @inline(__always) func member(_ i: Int) -> Bool {
            if cls[i].contains(.punctuation) { return true }
            switch cps[i] {
            case 0x24, 0x2B, 0x3C, 0x3D, 0x3E, 0x5E, 0x7E, 0x7C: return true  // $ + < = > ^ ~ |
            case 0x60: return backtick
            default: return false
            }
        }
        var i = lo
        while i < hi {
            guard member(i) else { i += 1; continue }
            var j = i + 1
            while j < hi && member(j) { j += 1 }
            sink.cut(i)
            sink.cut(j)
            i = j
        }
    }
}
