import Foundation
import RocketKV
import XCTest

/// Tokenizer unit tests on tiny hand-made vocabularies (no model file).
final class TokenizerTests: XCTestCase {
    // MARK: - Helpers

    /// The alphabet text of a string's bytes ("Ġ" for a space).
    static func a(_ s: String) -> String { ByteLevel.encode(Array(s.utf8)) }

    /// A merge line for two pieces of plain text.
    static func merge(_ l: String, _ r: String) -> String { a(l) + " " + a(r) }

    /// Vocabulary: the 256 byte characters (id = byte value), then each merge result (unless left
    /// out), then `extra` tokens with their types.
    static func make(merges: [String] = [], extra: [(String, Tokenizer.TokenType)] = [], pre: String = "gpt-2",
                     addMergeResults: Bool = true, bos: Int? = nil, eos: Int? = nil,
                     addBOS: Bool = false, addEOS: Bool = false) throws -> Tokenizer {
        var tokens = (0..<256).map { String(Unicode.Scalar(ByteLevel.scalarForByte[$0])!) }
        var types = [Int](repeating: 1, count: 256)
        if addMergeResults {
            for m in merges {
                let parts = m.split(separator: " ", maxSplits: 1)
                let joined = String(parts[0] + parts[1])
                if !tokens.contains(joined) { tokens.append(joined); types.append(1) }
            }
        }
        for (text, type) in extra { tokens.append(text); types.append(type.rawValue) }
        return try Tokenizer(tokens: tokens, merges: merges, tokenTypes: types, preTokenizer: pre,
                             bosID: bos, eosID: eos, addBOS: addBOS, addEOS: addEOS)
    }

    /// Texts of the tokens of `ids`, decoded.
    static func pieces(_ t: Tokenizer, _ ids: [Int]) -> [String] {
        ids.map { String(decoding: t.bytes(of: $0), as: UTF8.self) }
    }

    /// Compares splits scalar by scalar (Swift's String equality would equate "e\u{301}" and "é").
    func assertSplit(_ pre: String, _ text: String, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) {
        let words = try! PreTokenizer(name: pre).split(text)
        let got = words.map { Array($0.unicodeScalars) }
        let want = expected.map { Array($0.unicodeScalars) }
        XCTAssertEqual(got, want, "\(pre): \(words.map(\.debugDescription)) != \(expected.map(\.debugDescription))",
                       file: file, line: line)
        XCTAssertEqual(words.joined(), text, file: file, line: line)
    }

    // MARK: - Byte-level alphabet

    func testByteAlphabet() {
        XCTAssertEqual(ByteLevel.scalarForByte[0x20], 0x120)  // Ġ
        XCTAssertEqual(ByteLevel.scalarForByte[0x0A], 0x10A)  // Ċ
        XCTAssertEqual(ByteLevel.scalarForByte[0x41], 0x41)
        XCTAssertEqual(ByteLevel.scalarForByte[0xAD], 0x143)  // soft hyphen, the last remapped byte
        XCTAssertEqual(Set(ByteLevel.scalarForByte).count, 256)
        XCTAssertEqual(ByteLevel.scalarForByte.filter { $0 >= 256 }.count, 68)
        for b in 0..<256 { XCTAssertEqual(ByteLevel.byte(for: ByteLevel.scalarForByte[b]), UInt8(b)) }
        XCTAssertNil(ByteLevel.byte(for: 0x20))
        XCTAssertEqual(ByteLevel.encode(Array(" a\n".utf8)), "ĠaĊ")
    }

    // MARK: - BPE merges

    func testMergePriorityLowestRankFirst() throws {
        let m = Self.merge
        // "b c" outranks "a b": abc -> a + bc
        var t = try Self.make(merges: [m("b", "c"), m("a", "b")])
        XCTAssertEqual(Self.pieces(t, t.encode("abc")), ["a", "bc"])
        // swapped priorities: abc -> ab + c
        t = try Self.make(merges: [m("a", "b"), m("b", "c")])
        XCTAssertEqual(Self.pieces(t, t.encode("abc")), ["ab", "c"])
        // merges chain on merged symbols
        t = try Self.make(merges: [m("a", "b"), m("b", "c"), m("ab", "c")])
        XCTAssertEqual(Self.pieces(t, t.encode("abc")), ["abc"])
        XCTAssertEqual(t.encode("abc"), [t.id(of: "abc")!])
    }

    func testMergeTiesGoLeftmostFirst() throws {
        let m = Self.merge
        let t = try Self.make(merges: [m("a", "a"), m("aa", "aa")])
        XCTAssertEqual(Self.pieces(t, t.encode("aaa")), ["aa", "a"])
        XCTAssertEqual(Self.pieces(t, t.encode("aaaaa")), ["aaaa", "a"])
        XCTAssertEqual(Self.pieces(t, t.encode("aaaaaa")), ["aaaa", "aa"])
    }

    func testMergesStayInsideWords() throws {
        let t = try Self.make(merges: [Self.merge(" ", "b"), Self.merge("a", " ")])
        // gpt2 splits "a b" into "a" and " b": the "a " merge cannot apply across the word boundary.
        XCTAssertEqual(Self.pieces(t, t.encode("a b")), ["a", " b"])
    }

    func testMergeResultMissingFromVocabularyFallsBackToASCIIBytes() throws {
        let m = Self.merge
        let t = try Self.make(merges: [m("x", "y"), m(" ", "q")], addMergeResults: false)
        // "xy" is not a token: llama.cpp emits the one-character tokens of its bytes.
        XCTAssertEqual(Self.pieces(t, t.encode("xy")), ["x", "y"])
        // " q" becomes "Ġq"; its non-ASCII bytes have no one-byte tokens and are dropped (llama.cpp quirk).
        XCTAssertEqual(Self.pieces(t, t.encode(" q")), ["q"])
    }

    func testIgnoreMergesForLlama3() throws {
        let m = Self.merge
        // The merges alone would give "a" + "bc", but "abc" is a token and llama3 takes whole words as is.
        let merges = [m("b", "c")]
        let extra: [(String, Tokenizer.TokenType)] = [("abc", .normal)]
        let llama3 = try Self.make(merges: merges, extra: extra, pre: "llama-bpe")
        XCTAssertTrue(llama3.preTokenizer.ignoresMerges)
        XCTAssertEqual(Self.pieces(llama3, llama3.encode("abc")), ["abc"])
        let gpt2 = try Self.make(merges: merges, extra: extra, pre: "gpt-2")
        XCTAssertEqual(Self.pieces(gpt2, gpt2.encode("abc")), ["a", "bc"])
    }

    // MARK: - Pre-tokenizers

    func testContractions() {
        let s = "I'm don't WE'LL you're it's'"
        assertSplit("gpt-2", s, ["I", "'m", " don", "'t", " WE", "'", "LL", " you", "'re", " it", "'s", "'"])
        assertSplit("smollm", s, ["I", "'m", " don", "'t", " WE", "'", "LL", " you", "'re", " it", "'s", "'"])
        assertSplit("llama-bpe", s, ["I", "'m", " don", "'t", " WE", "'LL", " you", "'re", " it", "'s", "'"])
        assertSplit("qwen2", s, ["I", "'m", " don", "'t", " WE", "'LL", " you", "'re", " it", "'s", "'"])
    }

    func testDigitRuns() {
        let s = "abc 1234567 x12"
        assertSplit("gpt-2", s, ["abc", " 1234567", " x", "12"])
        // starcoder/smollm: every digit alone, so the space before a number is a word of its own.
        assertSplit("smollm", s, ["abc", " ", "1", "2", "3", "4", "5", "6", "7", " x", "1", "2"])
        assertSplit("llama-bpe", s, ["abc", " ", "123", "456", "7", " x", "12"])
        assertSplit("qwen2", s, ["abc", " ", "1", "2", "3", "4", "5", "6", "7", " x", "1", "2"])
        assertSplit("default", s, ["abc", " ", "123", "456", "7", " x", "12"])
        assertSplit("gpt-2", "pi 3.14159", ["pi", " 3", ".", "14159"])
        assertSplit("llama-bpe", "pi 3.14159", ["pi", " ", "3", ".", "141", "59"])
        // Non-ASCII numbers are \p{N} too; default's [0-9]{3} grouping is ASCII only.
        assertSplit("llama-bpe", "²³½٣٤٥٦", ["²³½", "٣٤٥", "٦"])
        assertSplit("default", "١٢٣٤ 12345", ["١٢٣٤", " ", "123", "45"])
    }

    func testWhitespaceRuns() {
        let s = "a  b   \n\n c \t"
        assertSplit("gpt-2", s, ["a", " ", " b", "   \n\n", " c", " \t"])
        assertSplit("llama-bpe", s, ["a", " ", " b", "   \n\n", " c", " \t"])
        assertSplit("gpt-2", "   ", ["   "])
        assertSplit("gpt-2", "x   ", ["x", "   "])
        // \s+(?!\S) keeps the last space for the next word.
        assertSplit("gpt-2", "x    y", ["x", "   ", " y"])
        // tabs: llama3 lets any non-letter, non-digit, non-newline character lead a word.
        assertSplit("gpt-2", "\tfoo", ["\t", "foo"])
        assertSplit("llama-bpe", "\tfoo", ["\tfoo"])
    }

    func testNewlinesAndCRLF() {
        let s = "line1\r\nline2\r\n"
        assertSplit("gpt-2", s, ["line", "1", "\r", "\n", "line", "2", "\r\n"])
        assertSplit("llama-bpe", s, ["line", "1", "\r\n", "line", "2", "\r\n"])
        assertSplit("qwen2", s, ["line", "1", "\r\n", "line", "2", "\r\n"])
        // llama3: punctuation takes the newlines after it; \s*[\r\n]+ ends at the last newline.
        assertSplit("llama-bpe", "end.\n\nNext  \n  x", ["end", ".\n\n", "Next", "  \n", " ", " x"])
        assertSplit("gpt-2", "end.\n\nNext", ["end", ".", "\n", "\n", "Next"])
    }

    func testPunctuation() {
        let s = "Hello, world!!! (ok)..."
        assertSplit("gpt-2", s, ["Hello", ",", " world", "!!!", " (", "ok", ")..."])
        assertSplit("llama-bpe", s, ["Hello", ",", " world", "!!!", " (", "ok", ")..."])
        assertSplit("gpt-2", "#tag", ["#", "tag"])
        assertSplit("llama-bpe", "#tag", ["#tag"])
        // default: runs of \p{P} and $+<=>^~| come first.
        assertSplit("default", "a+b=c; x->y, 1,000", ["a", "+", "b", "=", "c", ";", " x", "->", "y", ",", " ", "1", ",", "000"])
        // falcon adds the backtick to those runs.
        assertSplit("default", "`$", ["`", "$"])
        assertSplit("falcon", "`$", ["`$"])
    }

    func testEmojiCJKAccents() {
        let s = "café 😀👍🏽 中文 e\u{301}"
        // The combining accent (Mn) is not a letter: it splits off.
        let expected = ["café", " 😀👍🏽", " 中文", " e", "\u{301}"]
        assertSplit("gpt-2", s, expected)
        assertSplit("llama-bpe", s, expected)
        assertSplit("smollm", "日本語のテキスト、한국어", ["日本語のテキスト", "、", "한국어"])
    }

    /// The `llama-bpe` (Llama 3) and `qwen2` regexes on strings where their alternatives compete.
    func testLlama3AndQwen2TrickyStrings() {
        // A space takes the apostrophe as punctuation, so "'Re" after it is no contraction; a
        // non-contraction apostrophe leads the letters after it; contractions ignore ASCII case.
        let quotes = ["He", "'S", " '", "Re", " o", "'clock", "'d", " x", "'LL", "'vE"]
        assertSplit("llama-bpe", "He'S 'Re o'clock'd x'LL'vE", quotes)
        assertSplit("qwen2", "He'S 'Re o'clock'd x'LL'vE", quotes)
        // Numbers: runs of 1-3 (Llama 3) or single digits (Qwen2), any script, never with a space.
        assertSplit("llama-bpe", "12345 ١٢٣٤٥ x1y22", ["123", "45", " ", "١٢٣", "٤٥", " x", "1", "y", "22"])
        assertSplit("qwen2", "12345 x22", ["1", "2", "3", "4", "5", " x", "2", "2"])
        // Marks are neither letters nor digits: each leads the letters after it.
        assertSplit("llama-bpe", "nai\u{308}ve", ["nai", "\u{308}ve"])
        assertSplit("gpt-2", "nai\u{308}ve", ["nai", "\u{308}", "ve"])
        assertSplit("qwen2", "हिन्दी", ["ह", "िन", "्द", "ी"])
        // Newlines: whitespace up to the last newline of a run, then a space for the next word.
        assertSplit("llama-bpe", "a\n\n  b\r\n\r\nc  \n\t\n", ["a", "\n\n", " ", " b", "\r\n\r\n", "c", "  \n\t\n"])
        assertSplit("qwen2", "x \n \ny", ["x", " \n \n", "y"])
        // Punctuation takes the newlines after it (not the spaces).
        assertSplit("qwen2", "ok?!\n\n next", ["ok", "?!\n\n", " next"])
    }

    func testUnicodeWhitespace() {
        let s = "a\u{A0}b\u{3000}\u{3000}c"
        assertSplit("gpt-2", s, ["a", "\u{A0}", "b", "\u{3000}", "\u{3000}", "c"])
        assertSplit("llama-bpe", s, ["a", "\u{A0}b", "\u{3000}", "\u{3000}c"])
        // U+001F is not whitespace for llama.cpp (it is for Python's \s).
        assertSplit("gpt-2", "a\u{1F}b", ["a", "\u{1F}", "b"])
    }

    func testCharactersNewerThanLlamaCppTablesAreUnassigned() {
        // U+1C89 (Unicode 16) is a letter for Swift but unassigned in llama.cpp's Unicode 15.1 tables,
        // so it does not join the letters around it; U+0E01 (Thai, old) does.
        assertSplit("gpt-2", "a\u{1C89}b", ["a", "\u{1C89}", "b"])
        assertSplit("gpt-2", "a\u{0E01}b", ["a\u{0E01}b"])
        // U+10D40 (Unicode 16) is a digit for Swift, not for llama.cpp.
        assertSplit("llama-bpe", "1\u{10D40}2", ["1", "\u{10D40}", "2"])
    }

    /// Word splits against a dump of llama.cpp's `unicode_regex_split` (a JSON file of
    /// `{"cases": [{"pre", "text", "words"}]}`); runs only when ROCKETKV_SPLIT_CASES points at one.
    func testSplitsAgainstLlamaCppDump() throws {
        struct Dump: Decodable {
            struct Case: Decodable { let pre: String; let text: String; let words: [String] }
            let cases: [Case]
        }
        guard let path = ProcessInfo.processInfo.environment["ROCKETKV_SPLIT_CASES"] else {
            throw XCTSkip("set ROCKETKV_SPLIT_CASES to run")
        }
        let dump = try JSONDecoder().decode(Dump.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        var mismatches = 0
        for c in dump.cases {
            let words = try PreTokenizer(name: c.pre).split(c.text)
            if words.map({ Array($0.unicodeScalars) }) != c.words.map({ Array($0.unicodeScalars) }) {
                mismatches += 1
                if mismatches <= 10 { XCTFail("\(c.pre) \(c.text.debugDescription): \(words) != llama.cpp \(c.words)") }
            }
        }
        print("split comparison: \(dump.cases.count) cases, \(mismatches) mismatches")
        XCTAssertEqual(mismatches, 0)
    }

    func testPreTokenizerNames() throws {
        XCTAssertEqual(try PreTokenizer(name: "smollm").kind, .starcoder)
        XCTAssertEqual(try PreTokenizer(name: "llama-bpe").kind, .llama3)
        XCTAssertEqual(try PreTokenizer(name: "llama3").kind, .llama3)
        XCTAssertEqual(try PreTokenizer(name: "gpt2").kind, .gpt2)
        XCTAssertEqual(try PreTokenizer(name: "gpt-2").kind, .gpt2)
        XCTAssertEqual(try PreTokenizer(name: "qwen2").kind, .qwen2)
        XCTAssertEqual(try PreTokenizer(name: "default").kind, .default)
        XCTAssertEqual(try PreTokenizer(name: "").kind, .default)
        XCTAssertTrue(try PreTokenizer(name: "llama-bpe").addsBOSByDefault)
        XCTAssertFalse(try PreTokenizer(name: "dbrx").ignoresMerges)
        XCTAssertThrowsError(try PreTokenizer(name: "no-such-pre"))
        for kind in PreTokenizer.Kind.allCases { XCTAssertEqual(PreTokenizer(kind: kind).kind, kind) }
    }

    // MARK: - Special tokens

    func testSpecialTokenParsing() throws {
        let t = try Self.make(merges: [Self.merge("h", "i")],
                              extra: [("<|im_start|>", .control), ("<|im_end|>", .control),
                                      ("<|im", .control), ("<tool>", .userDefined)])
        let start = t.id(of: "<|im_start|>")!, end = t.id(of: "<|im_end|>")!, tool = t.id(of: "<tool>")!
        let hi = t.id(of: "hi")!
        let text = "<|im_start|>hi<tool><|im_end|>"
        // Longest match first: "<|im_start|>" wins over "<|im".
        XCTAssertEqual(t.encode(text), [start, hi, tool, end])
        // Without parseSpecial, control texts are plain text; user-defined tokens are still matched.
        let plain = t.encode(text, parseSpecial: false)
        XCTAssertFalse(plain.contains(start))
        XCTAssertFalse(plain.contains(end))
        XCTAssertTrue(plain.contains(tool))
        XCTAssertEqual(t.decode(plain), text)
        XCTAssertEqual(t.decode(t.encode(text)), text)
        // Text around a special token is encoded separately: no merge across it.
        XCTAssertEqual(Self.pieces(t, t.encode("h<|im_end|>i")), ["h", "<|im_end|>", "i"])
        XCTAssertEqual(t.encode("<|im_end|><|im_end|>"), [end, end])
        XCTAssertEqual(t.encode("<|im"), [t.id(of: "<|im")!])
        XCTAssertTrue(t.isControl(start))
        XCTAssertFalse(t.isControl(hi))
        XCTAssertEqual(t.encode(""), [])
    }

    func testBOSAndEOS() throws {
        let extra: [(String, Tokenizer.TokenType)] = [("<s>", .control), ("</s>", .control)]
        let t = try Self.make(extra: extra, bos: 256, eos: 257, addBOS: true, addEOS: true)
        XCTAssertEqual(t.encode("a"), [256, 97, 257])
        XCTAssertEqual(t.encode("a", addSpecial: false), [97])
        let u = try Self.make(extra: extra, bos: 256, eos: 257)
        XCTAssertEqual(u.encode("a"), [97])
        XCTAssertThrowsError(try Self.make(bos: nil, addBOS: true))
        XCTAssertThrowsError(try Self.make(bos: 9999))
    }

    func testEndOfGeneration() throws {
        // "<|im_end|>" typed normal is forced to control, as llama.cpp does.
        let t = try Self.make(extra: [("<|endoftext|>", .control), ("<|im_end|>", .normal), ("<|eot_id|>", .control),
                                      ("<|im_start|>", .control), ("<|fim_pad|>", .userDefined)],
                              eos: 256)
        let ids = ["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|fim_pad|>"].map { t.id(of: $0)! }
        XCTAssertEqual(t.endOfGenerationIDs, Set(ids))
        XCTAssertTrue(t.isControl(t.id(of: "<|im_end|>")!))
        XCTAssertFalse(t.endOfGenerationIDs.contains(t.id(of: "<|im_start|>")!))
        // explicit ids from the file are honoured
        let u = try Tokenizer(tokens: ["a", "b", "<stop>"], merges: [], tokenTypes: [1, 1, 3], preTokenizer: "gpt-2",
                              bosID: nil, eosID: 1, addBOS: false, addEOS: false,
                              specialIDs: SpecialTokenIDs(endOfTurn: 2))
        XCTAssertEqual(u.endOfGenerationIDs, [1, 2])
    }

    // MARK: - Decoding

    func testByteRoundTrip() throws {
        // No merges: every byte is its own token (the byte-level fallback path).
        let t = try Self.make()
        let text = "Hé 😀 中文\r\n\t\u{0}\u{7F}\u{FEFF}end"
        let ids = t.encode(text)
        XCTAssertEqual(ids, Array(text.utf8).map(Int.init))
        XCTAssertEqual(t.decode(ids), text)
        for b in 0..<256 { XCTAssertEqual(t.bytes(of: b), [UInt8(b)]) }
        XCTAssertEqual(t.vocabularySize, 256)
    }

    func testPiecesOfSpecialAndOddTokens() throws {
        let t = try Tokenizer(tokens: ["a", "<ctl>", "<usr>", "<unused>", "x y", "<0x41>", "?"], merges: [],
                              tokenTypes: [1, 3, 4, 5, 1, 6, 2], preTokenizer: "gpt-2",
                              bosID: nil, eosID: nil, addBOS: false, addEOS: false)
        XCTAssertEqual(t.bytes(of: 1), Array("<ctl>".utf8))    // control: its text
        XCTAssertEqual(t.bytes(of: 2), Array("<usr>".utf8))    // user-defined: its text
        XCTAssertEqual(t.bytes(of: 3), [])                     // unused: nothing
        // a space is not in the byte alphabet: llama.cpp's marker
        XCTAssertEqual(String(decoding: t.bytes(of: 4), as: UTF8.self), "x[UNK_BYTE_0x20x y]y")
        XCTAssertEqual(t.bytes(of: 5), [0x41])                 // byte token <0x41>
        XCTAssertEqual(t.bytes(of: 6), Array("?".utf8))        // unknown: its text
        XCTAssertEqual(t.bytes(of: 99), [])
        XCTAssertEqual(t.decode([0, 1, 3, 0]), "a<ctl>a")
        // special: false hides control and unknown tokens (llama.cpp's token_to_piece(special: false))
        XCTAssertEqual(t.bytes(of: 1, special: false), [])
        XCTAssertEqual(t.bytes(of: 6, special: false), [])
        XCTAssertEqual(t.bytes(of: 2, special: false), Array("<usr>".utf8))
        XCTAssertEqual(t.decode([0, 1, 2, 0], special: false), "a<usr>a")
        var s = StreamingDecoder(tokenizer: t, special: false)
        XCTAssertEqual(s.append(1) + s.append(0) + s.finish(), "a")
    }

    func testDecodeReplacesInvalidUTF8OnlyAtTheEnd() throws {
        let t = try Self.make()
        let smile = Array("😀".utf8).map(Int.init)  // 4 byte tokens
        XCTAssertEqual(t.decode(smile), "😀")
        XCTAssertEqual(t.decode(Array(smile.prefix(2))), "\u{FFFD}")
        XCTAssertEqual(t.decode([0xFF, 0x61]), "\u{FFFD}a")
    }

    func testStreamingDecoderHoldsBackSplitCharacters() throws {
        let t = try Self.make()
        var s = StreamingDecoder(tokenizer: t)
        let smile = Array("😀".utf8).map(Int.init)
        XCTAssertEqual(s.append(0x61), "a")
        XCTAssertEqual(s.append(smile[0]), "")
        XCTAssertEqual(s.append(smile[1]), "")
        XCTAssertEqual(s.append(smile[2]), "")
        XCTAssertEqual(s.pendingByteCount, 3)
        XCTAssertEqual(s.append(smile[3]), "😀")
        XCTAssertEqual(s.append(0xFF), "\u{FFFD}")   // never valid: replaced at once
        XCTAssertEqual(s.append(0xE4), "")           // first byte of 中
        XCTAssertEqual(s.append(0x61), "\u{FFFD}a")  // broken by an ASCII byte
        XCTAssertEqual(s.append(0xE4), "")
        XCTAssertEqual(s.finish(), "\u{FFFD}")       // unfinished at the end
        XCTAssertEqual(s.finish(), "")
    }

    func testStreamingMatchesDecodeOnRandomBytes() throws {
        let t = try Self.make()
        var rng = SplitMix64(seed: 42)
        let alphabet: [UInt8] = Array("a😀中é".utf8) + [0x80, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF, 0xA0, 0x9F, 0x90, 0x8F]
        for _ in 0..<2000 {
            let ids = (0..<Int(rng.next() % 12)).map { _ in Int(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
            var s = StreamingDecoder(tokenizer: t)
            var text = ""
            for id in ids { text += s.append(id) }
            text += s.finish()
            XCTAssertEqual(Array(text.unicodeScalars), Array(t.decode(ids).unicodeScalars), "\(ids)")
        }
    }

    // MARK: - SentencePiece

    /// A SentencePiece vocabulary: 0 `<unk>`, 1 `<s>`, 2 `</s>`, then (unless left out) the 256 byte
    /// tokens `<0x00>`... (id = 3 + byte), then `pieces` (normal, with their scores), then `extra`.
    static func spm(_ pieces: [(String, Float)], byteTokens: Bool = true, extra: [(String, Tokenizer.TokenType)] = [],
                    unknown: Int? = 0, addBOS: Bool = false, addEOS: Bool = false,
                    addSpacePrefix: Bool = false) throws -> Tokenizer {
        var tokens = ["<unk>", "<s>", "</s>"]
        var types: [Tokenizer.TokenType] = [.unknown, .control, .control]
        if byteTokens {
            for b in 0..<256 {
                tokens.append("<0x" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true) + ">")
                types.append(.byte)
            }
        }
        var scores = [Float](repeating: 0, count: tokens.count)
        for (text, score) in pieces { tokens.append(text); types.append(.normal); scores.append(score) }
        for (text, type) in extra { tokens.append(text); types.append(type); scores.append(0) }
        return try Tokenizer(sentencePieceTokens: tokens, scores: scores, tokenTypes: types.map(\.rawValue),
                             bosID: 1, eosID: 2, unknownID: unknown, addBOS: addBOS, addEOS: addEOS,
                             addSpacePrefix: addSpacePrefix)
    }

    /// Vocabulary texts of the tokens of `ids`.
    static func texts(_ t: Tokenizer, _ ids: [Int]) -> [String] { ids.map { t.tokenText($0)! } }

    func testSentencePieceMergesHighestScoreFirst() throws {
        let letters: [(String, Float)] = [("a", -10), ("b", -10), ("c", -10)]
        // "ab" outscores "bc": a+b first, then ab+c (any two symbols whose text is a token merge).
        var t = try Self.spm(letters + [("ab", -1), ("bc", -2), ("abc", -3)])
        XCTAssertEqual(Self.texts(t, t.encode("abc")), ["abc"])
        t = try Self.spm(letters + [("ab", -1), ("bc", -2)])
        XCTAssertEqual(Self.texts(t, t.encode("abc")), ["ab", "c"])
        t = try Self.spm(letters + [("ab", -2), ("bc", -1)])
        XCTAssertEqual(Self.texts(t, t.encode("abc")), ["a", "bc"])
        // "abc" is reachable from "a"+"bc" too; a merged token's own score does not matter once queued.
        t = try Self.spm(letters + [("ab", -2), ("bc", -1), ("abc", -100)])
        XCTAssertEqual(Self.texts(t, t.encode("abc")), ["abc"])
        // No pair is a token: single characters.
        XCTAssertEqual(Self.texts(t, t.encode("cba")), ["c", "b", "a"])
        XCTAssertEqual(t.encode(""), [])
    }

    func testSentencePieceTiesGoLeftmostFirst() throws {
        var t = try Self.spm([("a", -10), ("aa", -1)])
        XCTAssertEqual(Self.texts(t, t.encode("aaa")), ["aa", "a"])
        XCTAssertEqual(Self.texts(t, t.encode("aaaaa")), ["aa", "aa", "a"])
        t = try Self.spm([("a", -10), ("aa", -1), ("aaaa", -2)])
        XCTAssertEqual(Self.texts(t, t.encode("aaaaa")), ["aaaa", "a"])
        // Different pairs with equal scores: the left one merges, taking the shared "b".
        t = try Self.spm([("a", -10), ("b", -10), ("c", -10), ("ab", -1), ("bc", -1)])
        XCTAssertEqual(Self.texts(t, t.encode("abc")), ["ab", "c"])
        XCTAssertEqual(Self.texts(t, t.encode("bcab")), ["bc", "ab"])
    }

    func testSentencePieceSpacesAndPrefix() throws {
        let pieces: [(String, Float)] = [("▁", -5), ("a", -10), ("b", -10), ("▁a", -1), ("▁b", -1), ("▁▁", -2)]
        let extra: [(String, Tokenizer.TokenType)] = [("<tool>", .userDefined)]
        let plain = try Self.spm(pieces, extra: extra)
        XCTAssertEqual(Self.texts(plain, plain.encode("a b")), ["a", "▁b"])
        XCTAssertEqual(Self.texts(plain, plain.encode("a   b")), ["a", "▁▁", "▁b"])
        XCTAssertEqual(Self.texts(plain, plain.encode(" a")), ["▁a"])
        let prefixed = try Self.spm(pieces, extra: extra, addSpacePrefix: true)
        XCTAssertTrue(prefixed.addsSpacePrefix)
        XCTAssertEqual(Self.texts(prefixed, prefixed.encode("a b")), ["▁a", "▁b"])
        XCTAssertEqual(Self.texts(prefixed, prefixed.encode(" a")), ["▁", "▁a"])
        // The prefix goes before the first text and after every special token, not after text.
        XCTAssertEqual(Self.texts(prefixed, prefixed.encode("a</s>b<tool>a")), ["▁a", "</s>", "▁b", "<tool>", "▁a"])
        XCTAssertEqual(Self.texts(plain, plain.encode("a</s>b<tool>a")), ["a", "</s>", "b", "<tool>", "a"])
        // Only the special token itself: no text fragment, so no prefix.
        XCTAssertEqual(Self.texts(prefixed, prefixed.encode("</s>")), ["</s>"])
        // Without parseSpecial the control text is plain text (here: byte fallback); user-defined still matches.
        XCTAssertFalse(prefixed.encode("a</s>", parseSpecial: false).contains(2))
        XCTAssertEqual(Self.texts(prefixed, prefixed.encode("<tool>a", parseSpecial: false)), ["<tool>", "▁a"])
    }

    func testSentencePieceByteFallbackAndUnknown() throws {
        let t = try Self.spm([("a", -1), ("é", -1)])
        func byte(_ b: UInt8) -> Int { 3 + Int(b) }
        XCTAssertEqual(t.encode("aé"), [t.id(of: "a")!, t.id(of: "é")!])
        // Characters that are no token become the byte tokens of their UTF-8 bytes.
        XCTAssertEqual(t.encode("ü"), [byte(0xC3), byte(0xBC)])
        XCTAssertEqual(t.encode("a😀"), [t.id(of: "a")!] + Array("😀".utf8).map(byte))
        XCTAssertEqual(t.encode("\u{0}\n"), [byte(0), byte(0x0A)])
        XCTAssertEqual(t.decode(t.encode("aü😀\u{0}\né")), "aü😀\u{0}\né")
        // With no "▁" token a space falls back to the bytes of "▁", which decode as "▁" (llama.cpp does the same).
        XCTAssertEqual(t.decode(t.encode("a a")), "a▁a")
        // Without byte tokens a byte falls back to the unknown token (llama.cpp aborts there), or to nothing.
        let noBytes = try Self.spm([("a", -1)], byteTokens: false)
        XCTAssertEqual(noBytes.encode("aü"), [noBytes.id(of: "a")!, 0, 0])
        let noUnknown = try Self.spm([("a", -1)], byteTokens: false, unknown: nil)
        XCTAssertEqual(noUnknown.encode("aü"), [noUnknown.id(of: "a")!])
    }

    func testSentencePieceComparesTokenTextsByBytes() throws {
        // "é" precomposed and decomposed are equal Swift Strings but distinct tokens, as in llama.cpp.
        let t = try Self.spm([("e", -10), ("\u{301}", -10), ("\u{E9}", -1), ("e\u{301}", -2)])
        let composed = t.id(of: "\u{E9}")!, decomposed = t.id(of: "e\u{301}")!
        XCTAssertNotEqual(composed, decomposed)
        XCTAssertEqual(t.encode("\u{E9}"), [composed])
        XCTAssertEqual(t.encode("e\u{301}"), [decomposed])
        XCTAssertThrowsError(try Self.spm([("x", 0), ("x", 0)])) { error in
            XCTAssertTrue("\(error)".contains("duplicate token"), "\(error)")
        }
    }

    func testSentencePieceDecode() throws {
        let pieces: [(String, Float)] = [("▁", -5), ("a", -10), ("▁a", -1), ("b▁▁c", -1)]
        let t = try Self.spm(pieces, addBOS: true, addEOS: true, addSpacePrefix: true)
        let a = t.id(of: "▁a")!
        XCTAssertEqual(t.bytes(of: a), Array(" a".utf8))
        XCTAssertEqual(t.bytes(of: t.id(of: "b▁▁c")!), Array("b  c".utf8))
        XCTAssertEqual(t.bytes(of: 3 + 0x41), [0x41])
        XCTAssertEqual(t.bytes(of: 1), Array("<s>".utf8))
        XCTAssertEqual(t.bytes(of: 1, special: false), [])
        // The first piece loses one leading space (the encoded prefix); later pieces keep theirs.
        XCTAssertEqual(t.decode([a, a]), "a a")
        XCTAssertEqual(t.decode([t.id(of: "▁")!, a]), " a")
        // After BOS nothing is stripped: llama.cpp strips the first token's piece only.
        XCTAssertEqual(t.encode("a a"), [1, a, a, 2])
        XCTAssertEqual(t.decode(t.encode("a a")), "<s> a a</s>")
        XCTAssertEqual(t.decode(t.encode("a a"), special: false), " a a")
        for text in ["a", " a", "  a  ", "a\u{0}ü😀\r\n\t", ""] {
            XCTAssertEqual(t.decode(t.encode(text, addSpecial: false)), text)
            var start = StreamingDecoder(tokenizer: t, startOfText: true)
            var streamed = t.encode(text, addSpecial: false).map { start.append($0) }.joined()
            streamed += start.finish()
            XCTAssertEqual(streamed, text)
        }
        // A stream that continues a prompt keeps the first token's space.
        var continuing = StreamingDecoder(tokenizer: t)
        XCTAssertEqual(continuing.append(a) + continuing.append(a), " a a")
        // Split UTF-8 from byte tokens is held back until complete.
        var bytes = StreamingDecoder(tokenizer: t)
        XCTAssertEqual(Array("😀".utf8).map { bytes.append(3 + Int($0)) }, ["", "", "", "😀"])
    }

    // MARK: - GGUF loading

    func testLoadsFromGGUFWithLlamaCppDefaults() throws {
        var kv = Self.tinyTokenizerKV()
        kv.removeValue(forKey: "tokenizer.ggml.bos_token_id")
        let t = try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv)))
        XCTAssertEqual(t.preTokenizer.kind, .llama3)
        XCTAssertTrue(t.addBOS)                       // llama3 default when add_bos_token is missing
        XCTAssertEqual(t.bosID, 11)                   // llama.cpp's gpt2 default BOS id
        XCTAssertEqual(t.eosID, 12)
        XCTAssertEqual(t.encode("ab"), [11, 256])
    }

    func testGGUFErrors() throws {
        var kv = Self.tinyTokenizerKV()
        kv["tokenizer.ggml.model"] = .string("bert")
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv)))) { error in
            XCTAssertTrue("\(error)".contains("unsupported tokenizer model 'bert' in tokenizer.ggml.model"), "\(error)")
        }
        kv = Self.tinyTokenizerKV()
        kv["tokenizer.ggml.pre"] = .string("martian")
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv)))) { error in
            XCTAssertTrue("\(error)".contains("unknown pre-tokenizer type 'martian'"), "\(error)")
        }
        for key in ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"] {
            kv = Self.tinyTokenizerKV()
            kv.removeValue(forKey: key)
            XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv)))) { error in
                XCTAssertTrue(error is GGUFError, "\(error)")
                XCTAssertTrue("\(error)".contains(key), "\(error)")
            }
        }
        XCTAssertThrowsError(try Tokenizer(tokens: ["a", "a"], merges: [], tokenTypes: [], preTokenizer: "gpt-2",
                                           bosID: nil, eosID: nil, addBOS: false, addEOS: false))
    }

    func testLoadsSentencePieceFromGGUFWithLlamaCppDefaults() throws {
        var kv = Self.tinySentencePieceKV()
        var t = try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv)))
        XCTAssertEqual(t.algorithm, .sentencePiece)
        // llama defaults: BOS 1, EOS 2, unknown 0, BOS added, space prefix added.
        XCTAssertEqual([t.bosID, t.eosID, t.unknownID], [1, 2, 0])
        XCTAssertTrue(t.addBOS)
        XCTAssertFalse(t.addEOS)
        XCTAssertTrue(t.addsSpacePrefix)
        let (ab, a, b) = (t.id(of: "▁ab")!, t.id(of: "▁a")!, t.id(of: "▁b")!)
        XCTAssertEqual(t.encode("ab"), [1, ab])  // "▁" + "a", then "▁a" + "b"
        XCTAssertEqual(t.encode("a b", addSpecial: false), [a, b])
        XCTAssertEqual(t.encode("bé", addSpecial: false), [b, 3 + 0xC3, 3 + 0xA9])
        XCTAssertEqual(t.decode(t.encode("ab a", addSpecial: false)), "ab a")
        XCTAssertTrue(t.isEndOfGeneration(2))
        // Gemma 3 style: no space prefix, explicit ids and flags; integer scores are accepted too.
        kv["tokenizer.ggml.add_space_prefix"] = .bool(false)
        kv["tokenizer.ggml.add_bos_token"] = .bool(false)
        kv["tokenizer.ggml.add_eos_token"] = .bool(true)
        kv["tokenizer.ggml.bos_token_id"] = .u32(2)
        kv["tokenizer.ggml.eos_token_id"] = .u32(1)
        kv["tokenizer.ggml.unknown_token_id"] = .u32(99999)  // out of range: the default 0
        kv["tokenizer.ggml.scores"] = .ints([Int32](repeating: 0, count: Self.tinySentencePieceTokens.count))
        kv["tokenizer.ggml.pre"] = .string("martian")  // ignored for SentencePiece, as llama.cpp
        t = try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv)))
        XCTAssertFalse(t.addsSpacePrefix)
        XCTAssertEqual([t.bosID, t.eosID, t.unknownID], [2, 1, 0])
        XCTAssertEqual(t.encode("a b"), [t.id(of: "a")!, t.id(of: "▁b")!, 1])
    }

    func testSentencePieceGGUFErrorsNameTheKey() throws {
        let n = Self.tinySentencePieceTokens.count
        let cases: [(String, Value, String)] = [
            ("tokenizer.ggml.scores", .floats([0, 1]), "'tokenizer.ggml.scores' has 2 values for \(n) tokens"),
            ("tokenizer.ggml.scores", .strings(["x"]), "'tokenizer.ggml.scores' is not an array of float32 or int32"),
            ("tokenizer.ggml.scores", .u32(1), "'tokenizer.ggml.scores' is not an array"),
            ("tokenizer.ggml.token_type", .ints([1, 1]), "'tokenizer.ggml.token_type' has 2 values for \(n) tokens"),
            ("tokenizer.ggml.add_space_prefix", .u32(1), "'tokenizer.ggml.add_space_prefix' is not a boolean"),
            ("tokenizer.ggml.tokens", .ints([1]), "'tokenizer.ggml.tokens' is not an array of strings"),
        ]
        for (key, value, message) in cases {
            var kv = Self.tinySentencePieceKV()
            kv[key] = value
            XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv))), key) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error)")
            }
        }
        // A BYTE token must be written <0xNN>.
        var kv = Self.tinySentencePieceKV()
        var tokens = Self.tinySentencePieceTokens
        tokens[3] = "<0x0>"
        kv["tokenizer.ggml.tokens"] = .strings(tokens)
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv)))) { error in
            XCTAssertTrue("\(error)".contains("tokenizer.ggml.token_type"), "\(error)")
        }
        // EOS asked for but missing (two tokens: the default EOS id 2 is out of range).
        kv = Self.tinySentencePieceKV()
        kv["tokenizer.ggml.tokens"] = .strings(["<unk>", "<s>"])
        kv["tokenizer.ggml.token_type"] = .ints([2, 3])
        kv["tokenizer.ggml.scores"] = .floats([0, 0])
        kv["tokenizer.ggml.add_eos_token"] = .bool(true)
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(bytes: Self.gguf(kv)))) { error in
            XCTAssertTrue("\(error)".contains("'tokenizer.ggml.eos_token_id' is not set"), "\(error)")
        }
    }

    /// `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then a few pieces.
    static let tinySentencePieceTokens: [String] = ["<unk>", "<s>", "</s>"]
        + (0..<256).map { "<0x" + ($0 < 16 ? "0" : "") + String($0, radix: 16, uppercase: true) + ">" }
        + ["▁", "a", "b", "▁a", "▁b", "▁ab"]

    static func tinySentencePieceKV() -> [String: Value] {
        let tokens = tinySentencePieceTokens
        let types: [Int32] = [2, 3, 3] + [Int32](repeating: 6, count: 256) + [Int32](repeating: 1, count: 6)
        let scores: [Float] = [Float](repeating: 0, count: 259) + [-5, -10, -10, -2, -2, -1]
        return [
            "general.architecture": .string("gemma3"),
            "tokenizer.ggml.model": .string("llama"),
            "tokenizer.ggml.tokens": .strings(tokens),
            "tokenizer.ggml.token_type": .ints(types),
            "tokenizer.ggml.scores": .floats(scores),
        ]
    }

    enum Value { case string(String), strings([String]), ints([Int32]), floats([Float]), u32(UInt32), bool(Bool) }

    static func tinyTokenizerKV() -> [String: Value] {
        var tokens = (0..<256).map { String(Unicode.Scalar(ByteLevel.scalarForByte[$0])!) }
        tokens.append("ab")
        return [
            "general.architecture": .string("llama"),
            "tokenizer.ggml.model": .string("gpt2"),
            "tokenizer.ggml.pre": .string("llama-bpe"),
            "tokenizer.ggml.tokens": .strings(tokens),
            "tokenizer.ggml.token_type": .ints([Int32](repeating: 1, count: tokens.count)),
            "tokenizer.ggml.merges": .strings(["a b"]),
            "tokenizer.ggml.bos_token_id": .u32(99999),  // out of range: ignored, as llama.cpp
            "tokenizer.ggml.eos_token_id": .u32(12),
        ]
    }

    /// A GGUF v3 image with the given metadata and no tensors.
    static func gguf(_ kv: [String: Value]) -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        u32(3)
        u64(0)
        u64(UInt64(kv.count))
        for (key, value) in kv.sorted(by: { $0.key < $1.key }) {
            str(key)
            switch value {
            case .string(let s): u32(8); str(s)
            case .strings(let a): u32(9); u32(8); u64(UInt64(a.count)); a.forEach(str)
            case .ints(let a): u32(9); u32(5); u64(UInt64(a.count)); a.forEach { u32(UInt32(bitPattern: $0)) }
            case .floats(let a): u32(9); u32(6); u64(UInt64(a.count)); a.forEach { u32($0.bitPattern) }
            case .u32(let v): u32(4); u32(v)
            case .bool(let b): u32(7); out.append(b ? 1 : 0)
            }
        }
        while out.count % 32 != 0 { out.append(0) }
        return out
    }
}

/// Small deterministic generator for fuzz tests.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
