#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Error raised for tokenizer data that cannot be used.
public struct TokenizerError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Token ids that llama.cpp reads from optional `tokenizer.ggml.*_token_id` keys besides BOS/EOS.
/// When one is nil, the tokenizer looks for its well-known texts in the vocabulary, as llama.cpp does.
public struct SpecialTokenIDs: Sendable, Equatable {
    public var endOfTurn: Int?   // eot_token_id
    public var endOfMessage: Int?  // eom_token_id
    public var fimPrefix: Int?, fimSuffix: Int?, fimMiddle: Int?
    public var fimPad: Int?, fimRepository: Int?, fimSeparator: Int?

    public init(endOfTurn: Int? = nil, endOfMessage: Int? = nil, fimPrefix: Int? = nil, fimSuffix: Int? = nil,
                fimMiddle: Int? = nil, fimPad: Int? = nil, fimRepository: Int? = nil, fimSeparator: Int? = nil) {
        self.endOfTurn = endOfTurn
        self.endOfMessage = endOfMessage
        self.fimPrefix = fimPrefix
        self.fimSuffix = fimSuffix
        self.fimMiddle = fimMiddle
        self.fimPad = fimPad
        self.fimRepository = fimRepository
        self.fimSeparator = fimSeparator
    }
}

/// Tokenizer that reproduces llama.cpp's `llama_tokenize` / `llama_token_to_piece` for the two
/// vocabulary families of GGUF files (`tokenizer.ggml.model`):
/// - `gpt2`, byte-level BPE: every fragment is split into words by the pre-tokenizer, each word's
///   UTF-8 bytes are mapped to the GPT-2 byte alphabet and merged by BPE (lowest merge rank first,
///   leftmost first on ties). A final symbol missing from the vocabulary falls back to the
///   single-character tokens of its ASCII bytes.
/// - `llama`, SentencePiece (Llama 2, Gemma 3, ...): no pre-tokenizer; spaces become `▁`, the
///   characters of each fragment are merged pairwise by the highest token score (see SentencePiece.swift),
///   and a character that is no token falls back to its `<0xNN>` byte tokens.
///
/// In both, special tokens are cut out of the text first (control and user-defined token texts,
/// longest first; with `parseSpecial: false` only user-defined ones, as llama.cpp).
///
/// Decoding: a normal token decodes to the bytes its alphabet characters stand for (BPE) or to its
/// text with `▁` as a space (SentencePiece); byte tokens `<0xNN>` decode to their byte; control,
/// user-defined and unknown tokens decode to their text (llama.cpp's `token_to_piece` with
/// `special = true`); unused/undefined tokens decode to nothing. `decode` concatenates pieces like
/// llama.cpp's `llama_detokenize` without its space clean-up: the only change is that a vocabulary
/// that adds a space prefix loses one leading space of the first piece. So `decode(encode(s)) == s`
/// whenever the vocabulary has a token for every byte of `s`. A byte without one is dropped, as
/// llama.cpp does (SmolLM2 has no token for 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, nor for 0xF1/0xF2,
/// the lead bytes of U+40000...U+BFFFF).
public final class Tokenizer: Sendable {
    /// Token types as stored in `tokenizer.ggml.token_type`.
    public enum TokenType: Int, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// The encoding algorithm, named after its `tokenizer.ggml.model` value.
    public enum Algorithm: String, Sendable {
        /// `gpt2`: byte-level BPE over pre-tokenized words, with ranked merges.
        case byteLevelBPE = "gpt2"
        /// `llama`: SentencePiece BPE over whole fragments, with token scores and byte fallback.
        case sentencePiece = "llama"
    }

    /// llama.cpp's token attribute bits.
    struct Attributes: OptionSet {
        let rawValue: UInt16
        static let unknown = Attributes(rawValue: 1 << 0)
        static let unused = Attributes(rawValue: 1 << 1)
        static let normal = Attributes(rawValue: 1 << 2)
        static let control = Attributes(rawValue: 1 << 3)
        static let userDefined = Attributes(rawValue: 1 << 4)
        static let byte = Attributes(rawValue: 1 << 5)

        init(rawValue: UInt16) { self.rawValue = rawValue }

        init(type: Int) {
            switch TokenType(rawValue: type) {
            case .normal: self = .normal
            case .unknown: self = .unknown
            case .control: self = .control
            case .userDefined: self = .userDefined
            case .unused: self = .unused
            case .byte: self = .byte
            case .undefined, nil: self = []
            }
        }
    }

    struct Merge {
        var rank: Int32
        var result: Int32
    }

    public let algorithm: Algorithm
    /// The word splitter of byte-level BPE; SentencePiece does not use one (llama.cpp sets `default`).
    public let preTokenizer: PreTokenizer
    public let bosID: Int?
    public let eosID: Int?
    /// The id SentencePiece emits for a byte that has no byte token (`tokenizer.ggml.unknown_token_id`).
    public let unknownID: Int?
    /// Whether `encode(addSpecial: true)` prepends BOS / appends EOS.
    public let addBOS: Bool
    public let addEOS: Bool
    /// llama.cpp's `add_space_prefix`: SentencePiece encodes a space before the text and after every
    /// special token, and `decode` drops one leading space of the first piece.
    public let addsSpacePrefix: Bool
    /// Tokens that end generation (llama.cpp's `is_eog`): EOS, EOT, EOM, FIM pad/repo/separator and the
    /// well-known end-of-turn texts present in the vocabulary (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`,
    /// `<|endoftext|>`, ...).
    public let endOfGenerationIDs: Set<Int>

    let texts: [String]
    /// Token ids by the exact bytes of their text.
    let table: TokenTable
    let attributes: [Attributes]
    /// Control / user-defined / unknown tokens in matching order (longest text first).
    let specialTokens: [(id: Int, bytes: [UInt8], attributes: Attributes)]
    /// Decoded bytes of every token, concatenated; token `i` is `pieceBytes[pieceStart[i]..<pieceStart[i+1]]`.
    let pieceBytes: [UInt8]
    let pieceStart: [Int]

    // Byte-level BPE only (empty for SentencePiece).
    /// BPE merges keyed by `left << 32 | right` over interned symbol ids.
    let merges: [UInt64: Merge]
    /// Interned id of the alphabet character of each byte (-1: in neither vocabulary nor merges).
    let byteSymbol: [Int32]
    /// Vocabulary id of each one-byte ASCII string (-1 if absent): the fallback for unknown symbols.
    let asciiToken: [Int32]
    /// Texts of interned symbols that are not vocabulary tokens (ids from `texts.count` on).
    let extraSymbolTexts: [String]

    // SentencePiece only (empty for byte-level BPE).
    /// `tokenizer.ggml.scores`: a merge whose result has the higher score goes first.
    let scores: [Float]
    /// The token each byte falls back to (`<0xNN>`, else the one-byte text), -1 if none.
    let byteToken: [Int32]

    public var vocabularySize: Int { texts.count }

    /// Throws unless every id this tokenizer can produce has a row in the model's embedding (a file whose
    /// tokenizer and model vocabularies disagree would otherwise index past the embedding).
    public func checkFits(_ model: ModelConfig) throws {
        guard vocabularySize <= model.vocabularySize else {
            throw TokenizerError("the tokenizer has \(vocabularySize) tokens but the model's vocabulary has only \(model.vocabularySize) (tokenizer.ggml.tokens vs token_embd.weight)")
        }
    }

    // MARK: - Construction

    /// Builds a byte-level BPE tokenizer from the contents of the `tokenizer.ggml.*` keys.
    ///
    /// - Parameters:
    ///   - tokens: token texts (byte-level alphabet for normal tokens).
    ///   - merges: `"left right"` pairs, highest priority first.
    ///   - tokenTypes: one `TokenType` raw value per token, or empty (all normal).
    ///   - preTokenizer: a `tokenizer.ggml.pre` name (`""` = llama.cpp's default).
    public convenience init(tokens: [String], merges: [String], tokenTypes: [Int], preTokenizer: String,
                            bosID: Int?, eosID: Int?, addBOS: Bool, addEOS: Bool,
                            specialIDs: SpecialTokenIDs = SpecialTokenIDs()) throws {
        try self.init(algorithm: .byteLevelBPE, tokens: tokens, tokenTypes: tokenTypes, merges: merges, scores: [],
                      preTokenizer: try PreTokenizer(name: preTokenizer), bosID: bosID, eosID: eosID, unknownID: nil,
                      addBOS: addBOS, addEOS: addEOS, addsSpacePrefix: false, specialIDs: specialIDs)
    }

    /// Builds a SentencePiece tokenizer (`tokenizer.ggml.model` = `llama`).
    ///
    /// - Parameters:
    ///   - tokens: token texts, with `▁` for a space and `<0xNN>` for byte tokens.
    ///   - scores: one score per token (higher merges first), or empty (all 0, as llama.cpp).
    ///   - tokenTypes: one `TokenType` raw value per token, or empty (all normal).
    ///   - addSpacePrefix: `tokenizer.ggml.add_space_prefix` (llama.cpp's default is true; Gemma 3 sets false).
    public convenience init(sentencePieceTokens tokens: [String], scores: [Float], tokenTypes: [Int],
                            bosID: Int?, eosID: Int?, unknownID: Int? = nil, addBOS: Bool, addEOS: Bool,
                            addSpacePrefix: Bool, specialIDs: SpecialTokenIDs = SpecialTokenIDs()) throws {
        try self.init(algorithm: .sentencePiece, tokens: tokens, tokenTypes: tokenTypes, merges: [], scores: scores,
                      preTokenizer: PreTokenizer(kind: .default), bosID: bosID, eosID: eosID, unknownID: unknownID,
                      addBOS: addBOS, addEOS: addEOS, addsSpacePrefix: addSpacePrefix, specialIDs: specialIDs)
    }

    private init(algorithm: Algorithm, tokens: [String], tokenTypes: [Int], merges: [String], scores: [Float],
                 preTokenizer: PreTokenizer, bosID: Int?, eosID: Int?, unknownID: Int?,
                 addBOS: Bool, addEOS: Bool, addsSpacePrefix: Bool, specialIDs: SpecialTokenIDs) throws {
        let n = tokens.count
        guard n > 0 else { throw TokenizerError("the vocabulary is empty") }
        guard n < Int(Int32.max) / 2 else { throw TokenizerError("the vocabulary is too large (\(n) tokens)") }
        guard tokenTypes.isEmpty || tokenTypes.count >= n else {
            throw TokenizerError("token type count \(tokenTypes.count) is less than the token count \(n)")
        }
        guard scores.isEmpty || scores.count >= n else {
            throw TokenizerError("score count \(scores.count) is less than the token count \(n)")
        }
        for (name, id) in [("BOS", bosID), ("EOS", eosID), ("unknown", unknownID)] {
            if let id, !(0..<n).contains(id) { throw TokenizerError("\(name) token id \(id) is outside the vocabulary (0..<\(n))") }
        }
        if addBOS && bosID == nil { throw TokenizerError("the model asks for BOS but has no BOS token") }
        if addEOS && eosID == nil { throw TokenizerError("the model asks for EOS but has no EOS token") }

        self.algorithm = algorithm
        self.preTokenizer = preTokenizer
        self.bosID = bosID
        self.eosID = eosID
        self.unknownID = unknownID
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addsSpacePrefix = addsSpacePrefix

        // Vocabulary (llama.cpp renames empty tokens and rejects duplicates, comparing bytes).
        var texts = tokens
        for i in 0..<n where texts[i].isEmpty { texts[i] = "[EMPTY_\(i)]" }
        let table = try TokenTable(texts) { first, second in
            throw TokenizerError("duplicate token in vocabulary: '\(texts[second])' has ids \(first) and \(second)")
        }
        var attributes = tokenTypes.isEmpty
            ? [Attributes](repeating: .normal, count: n)
            : tokenTypes.prefix(n).map { Attributes(type: $0) }

        switch algorithm {
        case .byteLevelBPE:
            (self.merges, self.byteSymbol, self.extraSymbolTexts) = Tokenizer.internMerges(merges, texts: texts)
            self.asciiToken = (0..<128).map { b in table.id(of: String(Unicode.Scalar(UInt8(b)))) ?? -1 }
            self.scores = []
            self.byteToken = []
        case .sentencePiece:
            for id in 0..<n where attributes[id].contains(.byte) && Tokenizer.byteValue(ofByteToken: texts[id]) == nil {
                throw TokenizerError("token \(id) '\(texts[id])' has type BYTE (tokenizer.ggml.token_type) but is not written <0xNN>")
            }
            (self.merges, self.byteSymbol, self.asciiToken, self.extraSymbolTexts) = ([:], [], [], [])
            self.scores = scores.isEmpty ? [Float](repeating: 0, count: n) : Array(scores.prefix(n))
            self.byteToken = Tokenizer.sentencePieceByteTokens(table)
        }

        // Special tokens, as llama.cpp's vocabulary loader detects them by text.
        var eog = Set<Int>()
        func markControl(_ id: Int) { attributes[id].insert(.control) }
        func firstID(among candidates: [String]) -> Int? {
            candidates.compactMap { table.id(of: $0).map(Int.init) }.min()
        }
        var ids = specialIDs
        for (name, id) in [("EOT", ids.endOfTurn), ("EOM", ids.endOfMessage), ("FIM prefix", ids.fimPrefix),
                           ("FIM suffix", ids.fimSuffix), ("FIM middle", ids.fimMiddle), ("FIM pad", ids.fimPad),
                           ("FIM repository", ids.fimRepository), ("FIM separator", ids.fimSeparator)] {
            if let id, !(0..<n).contains(id) { throw TokenizerError("\(name) token id \(id) is outside the vocabulary (0..<\(n))") }
        }
        func detect(_ id: inout Int?, _ candidates: [String]) {
            guard id == nil, let found = firstID(among: candidates) else { return }
            id = found
            markControl(found)
        }
        detect(&ids.endOfTurn, ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
                                "<end_of_utterance>"])
        detect(&ids.endOfMessage, ["<|eom_id|>"])
        detect(&ids.fimPrefix, ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                                "▁<PRE>", "<|code_prefix|>", "<|prefix|>"])
        detect(&ids.fimSuffix, ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                                "▁<SUF>", "<|code_suffix|>", "<|suffix|>"])
        detect(&ids.fimMiddle, ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                                "▁<MID>", "<|code_middle|>", "<|middle|>"])
        detect(&ids.fimPad, ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"])
        detect(&ids.fimRepository, ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"])
        detect(&ids.fimSeparator, ["<|file_sep|>"])
        for id in [ids.fimPad, ids.fimRepository, ids.fimSeparator] { if let id { eog.insert(id) } }
        for text in Tokenizer.endOfGenerationTexts {
            if let id = table.id(of: text).map(Int.init) {
                eog.insert(id)
                markControl(id)
            }
        }
        // gpt-oss: these always render, as user-defined tokens.
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let id = table.id(of: text) { attributes[Int(id)] = .userDefined }
        }
        for id in [eosID, ids.endOfTurn, ids.endOfMessage] { if let id { eog.insert(id) } }
        // o200k_harmony / solar-open: "<|end|>" does not end generation there.
        let eogTexts = Set(eog.map { texts[$0] })
        if eogTexts.contains("<|end|>"),
           (eogTexts.contains("<|return|>") && eogTexts.contains("<|call|>"))
            || (eogTexts.contains("<|calls|>") && eogTexts.contains("<|flush|>")),
           let end = table.id(of: "<|end|>").map(Int.init) {
            eog.remove(end)
            attributes[end] = .userDefined
        }
        // gemma4 / paddleocr: "</s>" is not an end-of-generation token next to "<|tool_response>".
        if eogTexts.contains("<|tool_response>"), let s = table.id(of: "</s>").map(Int.init), eog.contains(s) {
            eog.remove(s)
            attributes[s] = .normal
        }
        self.endOfGenerationIDs = eog

        var special: [(id: Int, bytes: [UInt8], attributes: Attributes)] = []
        for id in 0..<n where !attributes[id].isDisjoint(with: [.control, .userDefined, .unknown]) {
            special.append((id, Array(texts[id].utf8), attributes[id]))
        }
        special.sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }
        self.specialTokens = special

        // Pieces.
        var pieceBytes: [UInt8] = []
        var pieceStart: [Int] = [0]
        pieceStart.reserveCapacity(n + 1)
        for id in 0..<n {
            Tokenizer.appendPiece(text: texts[id], attributes: attributes[id], algorithm: algorithm, to: &pieceBytes)
            pieceStart.append(pieceBytes.count)
        }
        self.pieceBytes = pieceBytes
        self.pieceStart = pieceStart

        self.texts = texts
        self.table = table
        self.attributes = attributes
    }

    /// BPE merges over interned symbols: vocabulary ids first, then strings that only merges mention.
    private static func internMerges(_ merges: [String], texts: [String])
        -> (merges: [UInt64: Merge], byteSymbol: [Int32], extraSymbolTexts: [String]) {
        let n = texts.count
        // Byte-level texts use no combining characters, so String keys (canonical equivalence) are exact here.
        var symbols: [String: Int32] = [:]
        symbols.reserveCapacity(n + merges.count)
        for (id, text) in texts.enumerated() where symbols[text] == nil { symbols[text] = Int32(id) }
        var extraSymbolTexts: [String] = []
        func intern(_ s: String) -> Int32 {
            if let id = symbols[s] { return id }
            let id = Int32(n + extraSymbolTexts.count)
            symbols[s] = id
            extraSymbolTexts.append(s)
            return id
        }
        var mergeTable: [UInt64: Merge] = [:]
        mergeTable.reserveCapacity(merges.count)
        for (rank, line) in merges.enumerated() {
            // As llama.cpp: split at the first space after the first byte.
            let utf8 = line.utf8
            guard !utf8.isEmpty, let space = utf8[utf8.index(after: utf8.startIndex)...].firstIndex(of: 0x20) else { continue }
            let left = String(line[..<space])
            let right = String(line[line.index(after: space)...])
            guard !left.isEmpty, !right.isEmpty else { continue }  // can never match a symbol
            let key = UInt64(UInt32(intern(left))) << 32 | UInt64(UInt32(intern(right)))
            if mergeTable[key] == nil {
                mergeTable[key] = Merge(rank: Int32(rank), result: intern(left + right))
            }
        }
        let byteSymbol: [Int32] = (0..<256).map { b in
            symbols[String(Unicode.Scalar(ByteLevel.scalarForByte[b])!)] ?? -1
        }
        return (mergeTable, byteSymbol, extraSymbolTexts)
    }

    /// Builds the tokenizer of a GGUF model from its `tokenizer.ggml.*` metadata, with llama.cpp's
    /// defaults for missing optional keys.
    public convenience init(gguf: GGUFFile) throws {
        let model = try gguf.string("tokenizer.ggml.model")
        guard let algorithm = Algorithm(rawValue: model) else {
            throw TokenizerError("unsupported tokenizer model '\(model)' in tokenizer.ggml.model "
                                 + "(supported: 'gpt2' byte-level BPE, 'llama' SentencePiece)")
        }
        let tokens = try gguf.stringArray("tokenizer.ggml.tokens")
        var types: [Int] = []
        if gguf.metadata["tokenizer.ggml.token_type"] != nil {
            types = try gguf.array("tokenizer.ggml.token_type").map { value in
                guard let t = value.intValue else { throw GGUFError("metadata key 'tokenizer.ggml.token_type' is not an array of integers") }
                return t
            }
            guard types.count >= tokens.count else {
                throw GGUFError("metadata key 'tokenizer.ggml.token_type' has \(types.count) values for \(tokens.count) tokens")
            }
        }
        func optionalID(_ key: String) throws -> Int? {
            guard let value = gguf.metadata[key] else { return nil }
            guard let id = value.intValue else { throw GGUFError("metadata key '\(key)' is not an integer") }
            return (0..<tokens.count).contains(id) ? id : nil  // llama.cpp ignores out-of-range ids
        }
        func optionalBool(_ key: String) throws -> Bool? {
            guard let value = gguf.metadata[key] else { return nil }
            guard let b = value.boolValue else { throw GGUFError("metadata key '\(key)' is not a boolean") }
            return b
        }
        // llama.cpp's default ids (used when the key is missing or out of range, and in range themselves).
        func defaultID(_ id: Int?) -> Int? { id.flatMap { $0 < tokens.count ? $0 : nil } }
        let ids = SpecialTokenIDs(
            endOfTurn: try optionalID("tokenizer.ggml.eot_token_id"),
            endOfMessage: try optionalID("tokenizer.ggml.eom_token_id"),
            fimPrefix: try optionalID("tokenizer.ggml.fim_pre_token_id") ?? optionalID("tokenizer.ggml.prefix_token_id"),
            fimSuffix: try optionalID("tokenizer.ggml.fim_suf_token_id") ?? optionalID("tokenizer.ggml.suffix_token_id"),
            fimMiddle: try optionalID("tokenizer.ggml.fim_mid_token_id") ?? optionalID("tokenizer.ggml.middle_token_id"),
            fimPad: try optionalID("tokenizer.ggml.fim_pad_token_id"),
            fimRepository: try optionalID("tokenizer.ggml.fim_rep_token_id"),
            fimSeparator: try optionalID("tokenizer.ggml.fim_sep_token_id"))
        let bos: Int?, eos: Int?, unknown: Int?, addBOS: Bool, addSpacePrefix: Bool
        let preTokenizer: PreTokenizer
        var merges: [String] = []
        var scores: [Float] = []
        switch algorithm {
        case .byteLevelBPE:
            var pre = ""
            if let value = gguf.metadata["tokenizer.ggml.pre"] {
                guard let s = value.stringValue else { throw GGUFError("metadata key 'tokenizer.ggml.pre' is not a string") }
                pre = s
            }
            preTokenizer = try PreTokenizer(name: pre)
            merges = try gguf.stringArray("tokenizer.ggml.merges")
            // gpt2 defaults: BOS = EOS = 11, no unknown token, no space prefix.
            bos = try optionalID("tokenizer.ggml.bos_token_id") ?? defaultID(11)
            eos = try optionalID("tokenizer.ggml.eos_token_id") ?? defaultID(11)
            unknown = try optionalID("tokenizer.ggml.unknown_token_id")
            addBOS = try optionalBool("tokenizer.ggml.add_bos_token") ?? preTokenizer.addsBOSByDefault
            addSpacePrefix = try optionalBool("tokenizer.ggml.add_space_prefix") ?? false
        case .sentencePiece:
            // llama.cpp ignores tokenizer.ggml.pre for SentencePiece.
            preTokenizer = PreTokenizer(kind: .default)
            if let value = gguf.metadata["tokenizer.ggml.scores"] {
                guard let array = value.arrayValue else { throw GGUFError("metadata key 'tokenizer.ggml.scores' is not an array") }
                scores = try array.map { value in
                    switch value {
                    case .float32(let f): return f
                    case .int32(let i): return Float(i)
                    default: throw GGUFError("metadata key 'tokenizer.ggml.scores' is not an array of float32 or int32")
                    }
                }
                guard scores.count >= tokens.count else {
                    throw GGUFError("metadata key 'tokenizer.ggml.scores' has \(scores.count) values for \(tokens.count) tokens")
                }
            }
            // llama defaults: BOS 1, EOS 2, unknown 0, BOS added, space prefix added.
            bos = try optionalID("tokenizer.ggml.bos_token_id") ?? defaultID(1)
            eos = try optionalID("tokenizer.ggml.eos_token_id") ?? defaultID(2)
            unknown = try optionalID("tokenizer.ggml.unknown_token_id") ?? defaultID(0)
            addBOS = try optionalBool("tokenizer.ggml.add_bos_token") ?? true
            addSpacePrefix = try optionalBool("tokenizer.ggml.add_space_prefix") ?? true
        }
        let addEOS = try optionalBool("tokenizer.ggml.add_eos_token") ?? false
        if addBOS && bos == nil {
            throw GGUFError("metadata key 'tokenizer.ggml.add_bos_token' is true, but 'tokenizer.ggml.bos_token_id' is not set")
        }
        if addEOS && eos == nil {
            throw GGUFError("metadata key 'tokenizer.ggml.add_eos_token' is true, but 'tokenizer.ggml.eos_token_id' is not set")
        }
        try self.init(algorithm: algorithm, tokens: tokens, tokenTypes: types, merges: merges, scores: scores,
                      preTokenizer: preTokenizer, bosID: bos, eosID: eos, unknownID: unknown, addBOS: addBOS,
                      addEOS: addEOS, addsSpacePrefix: addSpacePrefix, specialIDs: ids)
    }

    /// Texts llama.cpp treats as end of generation wherever they are in the vocabulary.
    static let endOfGenerationTexts = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<｜end▁of▁sentence｜>", "[e~[",
    ]

    /// The byte of a byte token written `<0xNN>` (either case of hex digit), or nil.
    static func byteValue(ofByteToken text: String) -> UInt8? {
        let u = Array(text.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }

    /// llama.cpp's `token_to_piece(special: true)`.
    private static func appendPiece(text: String, attributes: Attributes, algorithm: Algorithm, to bytes: inout [UInt8]) {
        if !attributes.isDisjoint(with: [.unknown, .control, .userDefined]) {
            bytes.append(contentsOf: text.utf8)
        } else if attributes.contains(.normal) {
            switch algorithm {
            case .sentencePiece: appendUnescapingSpaces(text, to: &bytes)
            case .byteLevelBPE: appendByteLevelDecoded(text, to: &bytes)
            }
        } else if attributes.contains(.byte) {
            if let b = byteValue(ofByteToken: text) { bytes.append(b) }
        }
        // unused / undefined: nothing
    }

    /// The bytes a byte-level BPE token stands for.
    private static func appendByteLevelDecoded(_ text: String, to bytes: inout [UInt8]) {
        for scalar in text.unicodeScalars {
            if let b = ByteLevel.byte(for: scalar.value) {
                bytes.append(b)
            } else {
                // llama.cpp's marker for a character outside the byte alphabet.
                bytes.append(contentsOf: "[UNK_BYTE_0x".utf8)
                for u in String(scalar).utf8 {
                    let hex = Array("0123456789abcdef".utf8)
                    bytes.append(hex[Int(u >> 4)])
                    bytes.append(hex[Int(u & 15)])
                }
                bytes.append(contentsOf: text.utf8)
                bytes.append(UInt8(ascii: "]"))
            }
        }
    }

    // MARK: - Queries

    /// The id of the token whose vocabulary text is exactly `tokenText`.
    public func id(of tokenText: String) -> Int? { table.id(of: tokenText).map(Int.init) }

    /// The vocabulary text of a token (byte-level alphabet or `▁` for spaces in normal tokens).
    public func tokenText(_ id: Int) -> String? { texts.indices.contains(id) ? texts[id] : nil }

    /// Whether the token is a control token (after llama.cpp's detection of end-of-turn texts).
    public func isControl(_ id: Int) -> Bool {
        attributes.indices.contains(id) && attributes[id].contains(.control)
    }

    /// Whether the token is user-defined: matched in any text before encoding, even without `parseSpecial`.
    public func isUserDefined(_ id: Int) -> Bool {
        attributes.indices.contains(id) && attributes[id].contains(.userDefined)
    }

    public func isEndOfGeneration(_ id: Int) -> Bool { endOfGenerationIDs.contains(id) }

    /// The bytes a token decodes to (llama.cpp's `token_to_piece`); empty for ids outside the vocabulary.
    /// - Parameter special: render control and unknown tokens as their text (true, the default) or
    ///   as nothing (false, what a chat front end shows). User-defined tokens always render.
    public func bytes(of id: Int, special: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        appendBytes(of: id, special: special, to: &out)
        return out
    }

    /// Appends a token's piece; `stripLeadingSpace` drops one leading space (llama.cpp's `lstrip`).
    func appendBytes(of id: Int, special: Bool = true, stripLeadingSpace: Bool = false, to out: inout [UInt8]) {
        guard id >= 0 && id < texts.count else { return }
        if !special && !attributes[id].isDisjoint(with: [.control, .unknown]) { return }
        var start = pieceStart[id]
        let end = pieceStart[id + 1]
        if stripLeadingSpace && start < end && pieceBytes[start] == 0x20 { start += 1 }
        out.append(contentsOf: pieceBytes[start..<end])
    }

    /// The text of a token sequence (llama.cpp's `llama_detokenize` without its space clean-up): pieces
    /// concatenated, the first one without its leading space if the vocabulary adds a space prefix,
    /// invalid UTF-8 replaced by U+FFFD at the end.
    /// - Parameter special: as in `bytes(of:special:)`.
    public func decode(_ ids: [Int], special: Bool = true) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for (i, id) in ids.enumerated() {
            appendBytes(of: id, special: special, stripLeadingSpace: i == 0 && addsSpacePrefix, to: &bytes)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - Encoding

    /// Token ids of `text`.
    /// - Parameters:
    ///   - addSpecial: add BOS / EOS where the model asks for them (`addBOS`, `addEOS`).
    ///   - parseSpecial: recognise control-token texts (such as `<|im_start|>`) in the text.
    ///     User-defined tokens are always recognised, as in llama.cpp.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = true) -> [Int] {
        var output: [Int] = []
        if addSpecial && addBOS, let bos = bosID { output.append(bos) }
        let bytes = Array(text.utf8)
        var scratch = Scratch()
        bytes.withUnsafeBufferPointer { buffer in
            // SentencePiece: llama.cpp puts the space prefix before the first text and after every special token.
            var afterSpecial = true
            for fragment in partition(buffer, parseSpecial: parseSpecial) {
                switch fragment {
                case .token(let id):
                    output.append(id)
                    afterSpecial = true
                case .text(let lo, let hi):
                    switch algorithm {
                    case .byteLevelBPE:
                        encodeFragment(buffer, lo, hi, into: &output, scratch: &scratch)
                    case .sentencePiece:
                        encodeSentencePiece(UnsafeBufferPointer(rebasing: buffer[lo..<hi]),
                                            spacePrefix: addsSpacePrefix && afterSpecial, into: &output,
                                            scratch: &scratch.sentencePiece)
                    }
                    afterSpecial = false
                }
            }
        }
        if addSpecial && addEOS, let eos = eosID { output.append(eos) }
        return output
    }

    enum Fragment: Equatable {
        case text(Int, Int)
        case token(Int)
    }

    /// Cuts special-token occurrences out of the text like llama.cpp's `tokenizer_st_partition`: each
    /// special token in turn (longest first) splits every remaining text fragment at all its
    /// non-overlapping occurrences, left to right.
    func partition(_ bytes: UnsafeBufferPointer<UInt8>, parseSpecial: Bool) -> [Fragment] {
        guard !bytes.isEmpty else { return [] }
        var fragments: [Fragment] = [.text(0, bytes.count)]
        for special in specialTokens {
            if !parseSpecial && !special.attributes.isDisjoint(with: [.control, .unknown]) { continue }
            let needle = special.bytes
            var result: [Fragment]? = nil
            for (index, fragment) in fragments.enumerated() {
                guard case .text(let lo, let hi) = fragment,
                      var match = find(needle, in: bytes, lo, hi) else {
                    result?.append(fragment)
                    continue
                }
                if result == nil { result = Array(fragments[..<index]) }
                var start = lo
                while true {
                    if match > start { result!.append(.text(start, match)) }
                    result!.append(.token(special.id))
                    start = match + needle.count
                    guard start < hi, let next = find(needle, in: bytes, start, hi) else { break }
                    match = next
                }
                if start < hi { result!.append(.text(start, hi)) }
            }
            if let result { fragments = result }
        }
        return fragments
    }

    private func find(_ needle: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int) -> Int? {
        guard !needle.isEmpty, needle.count <= hi - lo, let base = bytes.baseAddress else { return nil }
        return needle.withUnsafeBytes { n -> Int? in
            let first = Int32(needle[0])
            var at = lo
            let last = hi - needle.count  // last possible start
            while at <= last {
                guard let hit = memchr(base + at, first, last - at + 1) else { return nil }
                let position = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
                if memcmp(base + position, n.baseAddress!, n.count) == 0 { return position }
                at = position + 1
            }
            return nil
        }
    }

    /// Reusable buffers for encoding.
    struct Scratch {
        var scalars: [UInt32] = []
        var classes: [CharClass] = []
        var offsets: [Int] = []
        var symbols: [Int32] = []
        var prev: [Int32] = []
        var next: [Int32] = []
        var queue = MergeQueue()
        var sentencePiece = SentencePieceScratch()
    }

    private func encodeFragment(_ bytes: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int,
                                into output: inout [Int], scratch: inout Scratch) {
        // Scalars of the (valid UTF-8) fragment, with their byte offsets.
        scratch.scalars.removeAll(keepingCapacity: true)
        scratch.offsets.removeAll(keepingCapacity: true)
        var i = lo
        while i < hi {
            let b0 = UInt32(bytes[i])
            let cp: UInt32
            let len: Int
            if b0 < 0x80 {
                cp = b0; len = 1
            } else if b0 < 0xE0 {
                cp = (b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F); len = 2
            } else if b0 < 0xF0 {
                cp = (b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F); len = 3
            } else {
                cp = (b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6
                    | UInt32(bytes[i + 3] & 0x3F)
                len = 4
            }
            scratch.scalars.append(cp)
            scratch.offsets.append(i)
            i += len
        }
        scratch.offsets.append(hi)
        scratch.classes.removeAll(keepingCapacity: true)
        for cp in scratch.scalars { scratch.classes.append(CharClass.of(cp)) }

        let ends = preTokenizer.boundaries(scratch.scalars, scratch.classes)
        var start = 0
        for end in ends {
            encodeWord(bytes, scratch.offsets[start], scratch.offsets[end], into: &output, scratch: &scratch)
            start = end
        }
    }

    /// Byte-level BPE of one word (bytes `lo..<hi`).
    private func encodeWord(_ bytes: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int,
                            into output: inout [Int], scratch: inout Scratch) {
        let count = hi - lo
        if preTokenizer.ignoresMerges && count > 1,
           let id = table.id(of: ByteLevel.encode(UnsafeBufferPointer(rebasing: bytes[lo..<hi]))) {
            output.append(Int(id))
            return
        }
        if count == 1 {
            emitSymbol(byteSymbol[Int(bytes[lo])], into: &output)
            return
        }
        scratch.symbols.removeAll(keepingCapacity: true)
        scratch.prev.removeAll(keepingCapacity: true)
        scratch.next.removeAll(keepingCapacity: true)
        for k in 0..<count {
            scratch.symbols.append(byteSymbol[Int(bytes[lo + k])])
            scratch.prev.append(Int32(k - 1))
            scratch.next.append(k + 1 < count ? Int32(k + 1) : -1)
        }
        scratch.queue.removeAll()
        for k in 0..<(count - 1) { queuePair(Int32(k), Int32(k + 1), &scratch) }

        while let pair = scratch.queue.pop() {
            let l = Int(pair.left), r = Int(pair.right)
            // Skip pairs whose symbols have changed since they were queued.
            guard scratch.symbols[l] == pair.leftCheck, scratch.symbols[r] == pair.rightCheck else { continue }
            scratch.symbols[l] = pair.result
            scratch.symbols[r] = -2  // merged away
            let after = scratch.next[r]
            scratch.next[l] = after
            if after >= 0 { scratch.prev[Int(after)] = Int32(l) }
            let before = scratch.prev[l]
            if before >= 0 { queuePair(before, Int32(l), &scratch) }
            if after >= 0 { queuePair(Int32(l), after, &scratch) }
        }

        var k: Int32 = 0
        while k >= 0 {
            emitSymbol(scratch.symbols[Int(k)], into: &output)
            k = scratch.next[Int(k)]
        }
    }

    @inline(__always)
    private func queuePair(_ left: Int32, _ right: Int32, _ scratch: inout Scratch) {
        let a = scratch.symbols[Int(left)], b = scratch.symbols[Int(right)]
        guard a >= 0, b >= 0, let merge = merges[UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))] else { return }
        scratch.queue.push(MergeCandidate(priority: Double(merge.rank), left: left, right: right,
                                          leftCheck: a, rightCheck: b, result: merge.result))
    }

    /// Emits a final BPE symbol: its token, or (llama.cpp's fallback) the one-character tokens of its ASCII bytes.
    @inline(__always)
    private func emitSymbol(_ symbol: Int32, into output: inout [Int]) {
        if symbol >= 0 && Int(symbol) < texts.count {
            output.append(Int(symbol))
        } else if Int(symbol) >= texts.count {
            for b in extraSymbolTexts[Int(symbol) - texts.count].utf8 where b < 0x80 {
                let id = asciiToken[Int(b)]
                if id >= 0 { output.append(Int(id)) }
            }
        }
        // -1: a byte whose alphabet character is in neither the vocabulary nor the merges; its
        // character's UTF-8 bytes have no one-byte token either (see byteSymbol), so nothing is emitted.
    }
}

/// A candidate merge of the neighbouring symbols at `left` and `right` into `result`. It records what
/// the two symbols were when queued (`leftCheck`, `rightCheck`: BPE symbol ids, SentencePiece byte
/// lengths), so a candidate gone stale by an earlier merge is skipped.
struct MergeCandidate {
    /// Lower merges first: the BPE merge rank, or the negated SentencePiece score.
    var priority: Double
    var left: Int32
    var right: Int32
    var leftCheck: Int32
    var rightCheck: Int32
    var result: Int32

    /// Lowest priority first, then leftmost, as llama.cpp's work queues.
    @inline(__always)
    static func precedes(_ a: Self, _ b: Self) -> Bool {
        a.priority != b.priority ? a.priority < b.priority : a.left < b.left
    }
}

/// Binary heap of candidate merges; `pop` returns the one that `precedes` all others.
struct MergeQueue {
    private var heap: [MergeCandidate] = []

    mutating func removeAll() { heap.removeAll(keepingCapacity: true) }

    mutating func push(_ e: MergeCandidate) {
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard MergeCandidate.precedes(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> MergeCandidate? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < n && MergeCandidate.precedes(heap[l], heap[best]) { best = l }
                if r < n && MergeCandidate.precedes(heap[r], heap[best]) { best = r }
                if best == i { break }
                heap.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}
