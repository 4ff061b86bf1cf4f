import Foundation
import RocketKV
import XCTest

/// The tokenizer of the default model against llama.cpp (fixtures from scripts/make_token_fixture.py).
final class TokenizerFixtureTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let text: String
            let add_special: Bool
            let parse_special: Bool
            let ids: [Int]
        }
        let model: String
        let cases: [Case]
        // Only in ad-hoc files (--adhoc): llama.cpp's token_to_piece(special: true) bytes per id,
        // and its is_eog / is_control ids.
        let pieces: [[UInt8]]?
        let eog: [Int]?
        let control: [Int]?
    }

    static let tokenizer: Tokenizer = {
        do { return try Tokenizer(gguf: TestModel.file) } catch { fatalError("cannot build the tokenizer: \(error)") }
    }()

    func testFixtureMatchesLlamaCpp() throws {
        let fixture = try TestModel.fixture("tokens.json", as: Fixture.self)
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 20)
        let mismatches = Self.check(fixture, with: Self.tokenizer)
        XCTAssertEqual(mismatches, 0)
    }

    func testDefaultModelSpecialTokens() {
        let t = Self.tokenizer
        XCTAssertEqual(t.vocabularySize, 49152)
        XCTAssertEqual(t.preTokenizer.kind, .starcoder)
        XCTAssertEqual(t.bosID, 1)
        XCTAssertEqual(t.eosID, 2)
        XCTAssertFalse(t.addBOS)
        XCTAssertFalse(t.addEOS)
        XCTAssertEqual(t.id(of: "<|im_start|>"), 1)
        XCTAssertEqual(t.id(of: "<|im_end|>"), 2)
        // llama.cpp: EOS, "<|im_end|>", "<|endoftext|>" and the FIM repository token "<reponame>".
        XCTAssertEqual(t.endOfGenerationIDs, [0, 2, 4])
        XCTAssertEqual((0..<t.vocabularySize).filter { t.isControl($0) }, Array(0...16))
        XCTAssertEqual(t.decode(t.encode("<|im_start|>user\nHi<|im_end|>")), "<|im_start|>user\nHi<|im_end|>")
    }

    func testStreamingMatchesDecode() throws {
        let fixture = try TestModel.fixture("tokens.json", as: Fixture.self)
        for c in fixture.cases {
            var stream = StreamingDecoder(tokenizer: Self.tokenizer)
            var text = ""
            for id in c.ids { text += stream.append(id) }
            text += stream.finish()
            XCTAssertEqual(text, Self.tokenizer.decode(c.ids), c.text)
        }
    }

    /// Gemma 3 270M (SentencePiece without space prefix) against llama.cpp: Fixtures/gemma3/tokens.json.
    func testGemma3FixtureMatchesLlamaCpp() throws {
        let tokenizer = try Tokenizer(gguf: TestModel.gemmaFile)
        XCTAssertEqual(tokenizer.algorithm, .sentencePiece)
        XCTAssertFalse(tokenizer.addsSpacePrefix)
        XCTAssertTrue(tokenizer.addBOS)
        XCTAssertEqual(tokenizer.bosID, tokenizer.id(of: "<bos>"))
        XCTAssertTrue(tokenizer.isEndOfGeneration(tokenizer.id(of: "<end_of_turn>")!))
        let fixture = try TestModel.fixture("gemma3/tokens.json", as: Fixture.self)
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 20)
        XCTAssertEqual(Self.check(fixture, with: tokenizer), 0)
        for c in fixture.cases {
            var stream = StreamingDecoder(tokenizer: tokenizer, startOfText: true)
            let text = c.ids.map { stream.append($0) }.joined() + stream.finish()
            XCTAssertEqual(text, tokenizer.decode(c.ids), c.text)
        }
    }

    /// llama.cpp's own tokenizer tests (`models/ggml-vocab-NAME.gguf` with `.gguf.inp` / `.gguf.out` from
    /// its source tree, encoded without BOS and without parsing special tokens as its test-tokenizer-0
    /// does): runs when ROCKETKV_VOCAB_DIR points at a folder holding them.
    func testLlamaCppVocabularyTests() throws {
        guard let folder = ProcessInfo.processInfo.environment["ROCKETKV_VOCAB_DIR"] else {
            throw XCTSkip("set ROCKETKV_VOCAB_DIR to run")
        }
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
        let vocabularies = files.filter { $0.hasSuffix(".gguf") && files.contains($0 + ".inp") && files.contains($0 + ".out") }
        XCTAssertFalse(vocabularies.isEmpty, "no ggml-vocab-*.gguf with .inp/.out in \(folder)")
        for name in vocabularies.sorted() {
            let base = URL(fileURLWithPath: folder).appendingPathComponent(name).path
            let tokenizer: Tokenizer
            do { tokenizer = try Tokenizer(gguf: GGUFFile(path: base)) } catch {
                print("\(name): not loaded: \(error)")
                continue
            }
            var inputs = try String(contentsOfFile: base + ".inp", encoding: .utf8).components(separatedBy: "\n__ggml_vocab_test__\n")
            if inputs.last == "" { inputs.removeLast() }  // the file ends with a separator
            let outputs = try String(contentsOfFile: base + ".out", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            var mismatches = 0
            for (text, line) in zip(inputs, outputs) {
                let expected = line.split(separator: " ").compactMap { Int($0) }
                let ids = tokenizer.encode(text, addSpecial: false, parseSpecial: false)
                if ids != expected {
                    mismatches += 1
                    XCTFail("\(name) \(text.debugDescription): \(ids) != llama.cpp \(expected)")
                }
            }
            print("\(name) (\(tokenizer.algorithm.rawValue), \(tokenizer.preTokenizer)): \(inputs.count) cases, \(mismatches) mismatches")
        }
    }

    /// Encodes ~10,000 words of English prose and reports the time (release builds only are meaningful).
    func testEncodingSpeed() throws {
        let paragraph = """
        The most important thing about a startup is not the idea but the people. Ideas are cheap; what matters \
        is whether the founders can make something users want, and keep making it better week after week. \
        I've seen plenty of companies with mediocre ideas succeed because their founders were relentlessly \
        resourceful, while brilliant ideas died in the hands of people who couldn't ship. In 2005 we funded \
        8 startups; by 2024 the number was over 4,000.\n\n
        """
        var text = ""
        while text.split(separator: " ").count < 10_000 { text += paragraph }
        let words = text.split(separator: " ").count
        let built = Date()
        let t = try Tokenizer(gguf: TestModel.file)
        let buildSeconds = Date().timeIntervalSince(built)
        _ = t.encode(paragraph)  // warm up
        let start = Date()
        let ids = t.encode(text, addSpecial: false)
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "built the tokenizer in %.0f ms; encoded %d words (%d bytes) into %d tokens in %.1f ms (%.1f MB/s)",
                     buildSeconds * 1000, words, text.utf8.count, ids.count, seconds * 1000,
                     Double(text.utf8.count) / seconds / 1e6))
        // Pathological inputs stay linear-ish: one 200 kB word, long whitespace runs, dense special tokens.
        for (name, input) in [("one long word", String(repeating: "abcdefghij", count: 20_000)),
                              ("whitespace", String(repeating: " \n\t  ", count: 40_000)),
                              ("special tokens", String(repeating: "<|im_start|>x<|im_end|>", count: 10_000)),
                              ("emoji", String(repeating: "😀👍🏽中文", count: 10_000))] {
            let start = Date()
            let ids = t.encode(input, addSpecial: false)
            let seconds = Date().timeIntervalSince(start)
            print(String(format: "  %@: %d bytes -> %d tokens in %.1f ms", name, input.utf8.count, ids.count, seconds * 1000))
            XCTAssertEqual(t.decode(ids), input)
        }
        XCTAssertEqual(t.decode(ids), text)
        #if !DEBUG
        XCTAssertLessThan(seconds, 1.0)
        #endif
    }

    /// Ad-hoc comparison with a large file from `make_token_fixture.py --adhoc N --out FILE`:
    /// runs only when ROCKETKV_TOKEN_CASES=FILE (ROCKETKV_TOKEN_MODEL picks another GGUF).
    func testAdHocComparison() throws {
        let env = ProcessInfo.processInfo.environment
        guard let path = env["ROCKETKV_TOKEN_CASES"] else { throw XCTSkip("set ROCKETKV_TOKEN_CASES to run") }
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        let tokenizer = try env["ROCKETKV_TOKEN_MODEL"].map { try Tokenizer(gguf: GGUFFile(path: $0)) } ?? Self.tokenizer
        let mismatches = Self.check(fixture, with: tokenizer)
        var pieceMismatches = 0
        if let pieces = fixture.pieces {
            XCTAssertEqual(pieces.count, tokenizer.vocabularySize)
            for (id, bytes) in pieces.enumerated() where tokenizer.bytes(of: id) != bytes {
                pieceMismatches += 1
                if pieceMismatches <= 10 { print("piece \(id): \(tokenizer.bytes(of: id)) != llama.cpp \(bytes)") }
            }
        }
        if let eog = fixture.eog { XCTAssertEqual(tokenizer.endOfGenerationIDs, Set(eog)) }
        if let control = fixture.control {
            XCTAssertEqual((0..<tokenizer.vocabularySize).filter { tokenizer.isControl($0) }, control)
        }
        print("ad-hoc comparison (\(tokenizer.preTokenizer)): \(fixture.cases.count) cases, \(mismatches) mismatches; "
              + "\(fixture.pieces?.count ?? 0) pieces, \(pieceMismatches) mismatches")
        XCTAssertEqual(mismatches, 0)
        XCTAssertEqual(pieceMismatches, 0)
    }

    /// Compares every case; returns the number of cases whose ids differ. Round trips are asserted
    /// too, for texts whose bytes all have a token (llama.cpp drops the others: SmolLM2 lacks e.g.
    /// 0x04 and 0xF1, the lead byte of U+40000...U+7FFFF) and, for SentencePiece, that do not contain
    /// "▁" (which decodes as a space), nor special tokens where the vocabulary adds a space prefix
    /// (llama.cpp encodes a space after each).
    static func check(_ fixture: Fixture, with tokenizer: Tokenizer, file: StaticString = #filePath, line: UInt = #line) -> Int {
        let byteHasToken = (0..<256).map { b in
            switch tokenizer.algorithm {
            case .byteLevelBPE: tokenizer.id(of: String(Unicode.Scalar(ByteLevel.scalarForByte[b])!)) != nil
            case .sentencePiece: tokenizer.id(of: "<0x" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true) + ">") != nil
            }
        }
        var mismatches = 0
        for c in fixture.cases {
            let ids = tokenizer.encode(c.text, addSpecial: c.add_special, parseSpecial: c.parse_special)
            if ids != c.ids {
                mismatches += 1
                if mismatches <= 10 {
                    XCTFail("\(c.text.debugDescription) (add_special \(c.add_special), parse_special \(c.parse_special)): "
                            + "\(ids) != llama.cpp \(c.ids)", file: file, line: line)
                }
            }
            guard c.text.utf8.allSatisfy({ byteHasToken[Int($0)] }),
                  tokenizer.algorithm == .byteLevelBPE || !c.text.unicodeScalars.contains("▁") else { continue }
            let plain = tokenizer.encode(c.text, addSpecial: false, parseSpecial: c.parse_special)
            if tokenizer.addsSpacePrefix && plain.contains(where: { tokenizer.isControl($0) || tokenizer.isUserDefined($0) }) {
                continue
            }
            let back = tokenizer.decode(plain)
            if back != c.text {
                XCTFail("round trip of \(c.text.debugDescription) gave \(back.debugDescription)", file: file, line: line)
            }
        }
        return mismatches
    }
}
