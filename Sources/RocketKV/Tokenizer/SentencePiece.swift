/// SentencePiece encoding (`tokenizer.ggml.model` = `llama`) as llama.cpp's `llm_tokenizer_spm_session`.
///
/// One text fragment (the text between special tokens) is encoded as a whole, without pre-tokenizer:
/// 1. spaces become `▁` (U+2581), and a `▁` goes in front when the vocabulary adds a space prefix and
///    the fragment starts the text or follows a special token;
/// 2. every UTF-8 character is a symbol; each pair of neighbours whose concatenation is a token is a
///    candidate, and the candidate whose token has the highest score is merged first (ties: the
///    leftmost), after which the merged symbol's new pairs become candidates;
/// 3. each final symbol is its token; a symbol that is no token (only single characters can be) is
///    emitted as the byte tokens `<0xNN>` of its UTF-8 bytes.
///
/// Every vocabulary entry takes part in merges, whatever its type (llama.cpp looks texts up in the
/// whole vocabulary). llama.cpp also records the pair each merge came from to "resegment" a final
/// symbol that is not a token, but a merged symbol always is one, so that path never runs.
extension Tokenizer {
    /// Reusable buffers: the escaped text and its symbols as a linked list of byte ranges.
    struct SentencePieceScratch {
        var text: [UInt8] = []
        var start: [Int32] = []
        var length: [Int32] = []  // 0: merged into its left neighbour
        var prev: [Int32] = []
        var next: [Int32] = []
        var token: [Int32] = []   // token of a merged symbol; -1 until looked up
        var queue = MergeQueue()
    }

    /// The SentencePiece token ids of one text fragment.
    func encodeSentencePiece(_ fragment: UnsafeBufferPointer<UInt8>, spacePrefix: Bool,
                             into output: inout [Int], scratch s: inout SentencePieceScratch) {
        let escapedSpace: [UInt8] = [0xE2, 0x96, 0x81]  // ▁
        s.text.removeAll(keepingCapacity: true)
        if spacePrefix { s.text.append(contentsOf: escapedSpace) }
        for b in fragment {
            if b == 0x20 { s.text.append(contentsOf: escapedSpace) } else { s.text.append(b) }
        }
        guard !s.text.isEmpty else { return }

        s.start.removeAll(keepingCapacity: true)
        s.length.removeAll(keepingCapacity: true)
        s.prev.removeAll(keepingCapacity: true)
        s.next.removeAll(keepingCapacity: true)
        s.token.removeAll(keepingCapacity: true)
        s.queue.removeAll()
        var offset = 0
        while offset < s.text.count {
            let n = min(Tokenizer.utf8Length(lead: s.text[offset]), s.text.count - offset)
            let k = Int32(s.start.count)
            s.start.append(Int32(offset))
            s.length.append(Int32(n))
            s.prev.append(k - 1)
            offset += n
            s.next.append(offset == s.text.count ? -1 : k + 1)
            s.token.append(-1)
        }

        s.text.withUnsafeBufferPointer { text in
            for k in 1..<Int32(s.start.count) { queuePair(k - 1, k, text, &s) }
            while let pair = s.queue.pop() {
                let l = Int(pair.left), r = Int(pair.right)
                // Stale once either symbol changed (llama.cpp compares the summed length; symbols only grow).
                guard s.length[l] == pair.leftCheck, s.length[r] == pair.rightCheck else { continue }
                s.length[l] += s.length[r]
                s.length[r] = 0
                s.token[l] = pair.result
                let after = s.next[r]
                s.next[l] = after
                if after >= 0 { s.prev[Int(after)] = pair.left }
                queuePair(s.prev[l], pair.left, text, &s)
                queuePair(pair.left, after, text, &s)
            }

            var k = 0
            while k >= 0 {
                let symbol = UnsafeBufferPointer(rebasing: text[Int(s.start[k])..<Int(s.start[k] + s.length[k])])
                if let id = s.token[k] >= 0 ? s.token[k] : table.id(of: symbol) {
                    output.append(Int(id))
                } else {
                    for b in symbol {
                        // llama.cpp aborts on a byte without a token; the unknown token is the safe stand-in.
                        let id = byteToken[Int(b)]
                        if id >= 0 { output.append(Int(id)) } else if let unknownID { output.append(unknownID) }
                    }
                }
                k = Int(s.next[k])
            }
        }
    }

    /// Queues the merge of the symbols at `left` and `right` if their text is a token: the highest
    /// score first, ties to the leftmost (llama.cpp's `llm_bigram_spm::comparator`).
    @inline(__always)
    private func queuePair(_ left: Int32, _ right: Int32, _ text: UnsafeBufferPointer<UInt8>,
                           _ s: inout SentencePieceScratch) {
        guard left >= 0, right >= 0 else { return }
        let lo = Int(s.start[Int(left)])
        let (leftLength, rightLength) = (s.length[Int(left)], s.length[Int(right)])
        let symbols = UnsafeBufferPointer(rebasing: text[lo..<lo + Int(leftLength + rightLength)])
        guard let token = table.id(of: symbols) else { return }
        s.queue.push(MergeCandidate(priority: -Double(scores[Int(token)]), left: left, right: right,
                                    leftCheck: leftLength, rightCheck: rightLength, result: token))
    }

    /// Length of a UTF-8 sequence from its first byte, as llama.cpp's `unicode_len_utf8` (a stray
    /// continuation byte counts as one).
    @inline(__always)
    static func utf8Length(lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xF: return 4
        case 0xE: return 3
        case 0xC, 0xD: return 2
        default: return 1
        }
    }

    /// llama.cpp's `byte_to_token` for SentencePiece: the token `<0xNN>` (upper-case hex), else the
    /// token whose text is that single byte; -1 where neither exists.
    static func sentencePieceByteTokens(_ table: TokenTable) -> [Int32] {
        let hex = Array("0123456789ABCDEF".utf8)
        return (0..<256).map { b -> Int32 in
            let name = [UInt8(ascii: "<"), UInt8(ascii: "0"), UInt8(ascii: "x"), hex[b >> 4], hex[b & 15], UInt8(ascii: ">")]
            if let id = name.withUnsafeBufferPointer({ table.id(of: $0) }) { return id }
            // The one-byte fallback is a C string: NUL is the empty text, which no token has.
            guard b != 0 else { return -1 }
            return [UInt8(b)].withUnsafeBufferPointer { table.id(of: $0) } ?? -1
        }
    }

    /// A SentencePiece token's text with each `▁` turned back into a space.
    static func appendUnescapingSpaces(_ text: String, to bytes: inout [UInt8]) {
        let u = Array(text.utf8)
        var i = 0
        while i < u.count {
            if i + 2 < u.count && u[i] == 0xE2 && u[i + 1] == 0x96 && u[i + 2] == 0x81 {
                bytes.append(0x20)
                i += 3
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
    }
}
